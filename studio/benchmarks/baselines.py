"""Reference training loops the studio engine is compared with, one config per process.

    python -m studio.benchmarks.baselines MODEL_DIR CONFIG DATA [--steps 10] [--seq 4096]

CONFIG:
  seed      the recipe people start from: bitsandbytes 4-bit defaults (fp4, fp32 compute), LoRA r=32 on
            q/k/v/o only, fp16 autocast with a GradScaler, no gradient checkpointing
  hf-lora   plain Hugging Face: bf16 weights, LoRA r=32 on all linear layers, SDPA, gradient checkpointing
  hf-qlora  plain Hugging Face QLoRA: NF4 + double quantization, bf16 compute, all linear, checkpointing
  unsloth-lora / unsloth-qlora   Unsloth's FastLanguageModel (when the unsloth package is importable)
DATA: fixed (every step one --seq token sequence) | mix (one sequence a step, log-normal length, mean ≈ 1.5k)

A manual loop (forward with labels, backward, AdamW step), median tokens/s of the steps after two
warm-up steps, peak = torch.cuda.max_memory_allocated. Prints one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load(model_dir: str, config: str, seq: int):
    import torch

    if config.startswith("unsloth"):
        import unsloth  # noqa: F401  (Unsloth patches transformers: it must come first)
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(model_name=model_dir, max_seq_length=seq, dtype=torch.bfloat16,
                                                     load_in_4bit=config == "unsloth-qlora", local_files_only=True)
        model = FastLanguageModel.get_peft_model(model, r=32, lora_alpha=32, lora_dropout=0, bias="none",
                                                 target_modules=ALL_LINEAR, use_gradient_checkpointing="unsloth",
                                                 random_state=0)
        model.train()
        return model, torch.bfloat16, None
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"device_map": {"": 0}, "attn_implementation": "sdpa"}
    if config == "seed":
        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_4bit=True), dtype=torch.float16)
        targets, checkpointing = ALL_LINEAR[:4], False
    elif config == "hf-qlora":
        kwargs.update(dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
        targets, checkpointing = ALL_LINEAR, True
    elif config == "hf-lora":
        kwargs.update(dtype=torch.bfloat16)
        targets, checkpointing = ALL_LINEAR, True
    else:
        raise SystemExit(f"unknown config {config}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, lora_dropout=0.05, target_modules=targets,
                                             bias="none", task_type="CAUSAL_LM"))
    amp = torch.float16 if config == "seed" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if config == "seed" else None
    return model, amp, scaler


def lengths(data: str, steps: int, seq: int) -> list[int]:
    if data == "fixed":
        return [seq] * steps
    from studio.benchmarks.synthetic_data import mixed_length

    rng = random.Random(0)
    return [mixed_length(rng, cap=seq) for _ in range(steps)]


def run(model_dir: str, config: str, data: str, steps: int, seq: int) -> dict:
    import torch

    torch.cuda.reset_peak_memory_stats()
    model, amp, scaler = load(model_dir, config, seq)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    rates, status, loss = [], "ok", None
    try:
        for length in lengths(data, steps + 2, seq):
            ids = torch.randint(0, 150000, (1, length), generator=generator).cuda()
            torch.cuda.synchronize()
            start = time.time()
            with torch.autocast("cuda", dtype=amp):
                loss = model(input_ids=ids, labels=ids).loss
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            rates.append(length / (time.time() - start))
    except torch.cuda.OutOfMemoryError:
        status = "OOM"
    result = {"name": config, "method": "qlora" if "qlora" in config or config == "seed" else "lora", "data": data,
              "status": status, "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    if len(rates) > 2:
        result.update(tokens_per_s=round(statistics.median(rates[2:]), 1), last_loss=round(loss.item(), 3))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("config")
    parser.add_argument("data", choices=["fixed", "mix"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seq", type=int, default=4096)
    args = parser.parse_args(argv)
    print("RESULT " + json.dumps(run(args.model_dir, args.config, args.data, args.steps, args.seq)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
