"""Peak memory and tokens/s of LoRA / QLoRA steps on a random-weight R1-Distill-Qwen-7B (Qwen2) architecture.

A manual loop like the Hugging Face baseline (forward with labels under autocast, backward, AdamW
step; median of steps 2..; torch.cuda.max_memory_allocated), with more shapes, to check studio/train/estimate.py.
Usage (on a GPU box): python -m studio.benchmarks.estimate_calibration OUT_JSONL NAME... ; NAME = method:targets:ckpt:batch:seq[:r]
  method lora | qlora (bench: nf4 + double quant, no prepare) | qlora-studio (prepare_model_for_kbit_training)
         | seed (bnb defaults fp4, fp16 autocast, GradScaler)
"""
import gc, json, sys, time

import torch
from transformers import AutoModelForCausalLM, Qwen2Config
from peft import LoraConfig, get_peft_model

R1_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072, rope_theta=10000.0,
             rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu", sliding_window=None,
             use_sliding_window=False)
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATT = ALL[:4]


def quantize(model, quant_type, double, compute_dtype):
    import bitsandbytes as bnb

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                            compute_dtype=compute_dtype, compress_statistics=double,
                                            quant_type=quant_type, device="meta")
                    new.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=double,
                                                   quant_type=quant_type, module=new).to("cuda")
                    if child.bias is not None:
                        new.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                    setattr(parent, name, new)
                    del child
    model.is_loaded_in_4bit = True
    gc.collect(); torch.cuda.empty_cache()
    return model


LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
                rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu", attention_bias=False)


def build(method, ckpt, arch="qwen7b"):
    if arch == "llama8b":
        from transformers import LlamaConfig
        cfg = LlamaConfig(**LLAMA_8B)
    else:
        cfg = Qwen2Config(**R1_7B)
    dtype = torch.float16 if method == "seed" else torch.bfloat16
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    if method == "seed":
        quantize(model, "fp4", False, torch.float32)
    elif method.startswith("qlora"):
        quantize(model, "nf4", True, torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    if method == "qlora-studio":
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=ckpt)
    elif ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    return model


def run(spec, steps=9):
    parts = spec.split(":")
    method, targets, ckpt, batch, seq = parts[0], parts[1], parts[2] == "ckpt", int(parts[3]), int(parts[4])
    r = int(parts[5]) if len(parts) > 5 else 32
    arch = parts[6] if len(parts) > 6 else "qwen7b"
    gc.collect(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated()
    t0 = time.time()
    model = build(method, ckpt, arch)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=ALL if targets == "all" else ATT,
                                             bias="none", task_type="CAUSAL_LM"))
    weights = torch.cuda.memory_allocated() / 2**30
    build_peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    amp = torch.float16 if method == "seed" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if method == "seed" else None
    g = torch.Generator().manual_seed(0)
    times, host, status = [], [], "ok"
    try:
        for _ in range(steps):
            ids = torch.randint(0, min(150000, model.config.vocab_size), (batch, seq), generator=g).cuda()
            torch.cuda.synchronize(); t = time.time()
            with torch.autocast("cuda", dtype=amp):
                loss = model(input_ids=ids, labels=ids).loss
            if scaler:
                scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            else:
                loss.backward(); opt.step()
            opt.zero_grad(set_to_none=True)
            host.append(time.time() - t)
            torch.cuda.synchronize(); times.append(time.time() - t)
    except torch.cuda.OutOfMemoryError:
        status = "OOM"
    peak = torch.cuda.max_memory_allocated() / 2**30
    reserved = torch.cuda.max_memory_reserved() / 2**30
    res = dict(spec=spec, status=status, base_alloc_gib=round(base_alloc / 2**30, 3), weights_gib=round(weights, 3),
               trainable=trainable, build_peak_gib=round(build_peak, 3), peak_gib=round(peak, 3), reserved_gib=round(reserved, 2),
               build_s=round(time.time() - t0 - sum(times), 1))
    if len(times) > 2:
        med = sorted(times[2:])[len(times[2:]) // 2]
        res.update(step_s=round(med, 4), tok_s=round(batch * seq / med), times=[round(t, 4) for t in times],
                   host_s=round(sorted(host[2:])[len(host[2:]) // 2], 4))
    print("RESULT " + json.dumps(res), flush=True)
    del model, opt
    loss = None
    gc.collect(); torch.cuda.empty_cache()
    return res


if __name__ == "__main__":
    out = sys.argv[1]
    import transformers, peft
    print(torch.__version__, torch.cuda.get_device_name(0), "transformers", transformers.__version__,
          "peft", peft.__version__, flush=True)
    for spec in sys.argv[2:]:
        try:
            res = run(spec)
        except Exception as error:  # keep going: one broken config must not lose the others
            res = dict(spec=spec, status=f"error {type(error).__name__}: {error}"[:400])
            print("RESULT " + json.dumps(res), flush=True)
            gc.collect(); torch.cuda.empty_cache()
        with open(out, "a") as f:
            f.write(json.dumps(res) + "\n")
