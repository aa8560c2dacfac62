"""What the Trainer adds: the studio's model set-up driven by a bare loop, with the Trainer's extras one at a time.

    python -m studio.benchmarks.trainer_overhead MODEL_DIR [--steps 6] [--seq 4096] [--mask] [--clip]
        [--num-items] [--no-fused-lora] [--no-liger] [--attention auto|flash|cudnn|efficient|varlen]

The model is built from the pieces `studio.train.job` uses (load_base_for_training, PEFT LoRA r=32 on all
linear layers, the fused LoRA linear, Liger kernels, the attention `--attention` names; no collator, no
offload) and trained by a plain loop: bf16 autocast, forward with labels, backward, fused AdamW. --mask passes
an all-ones attention mask as the Trainer's collator does, --clip clips the gradient norm and reads it back as
the Trainer's logging does, --num-items divides the summed loss by the token count as the Trainer does. Prints
`RESULT {json}` like studio.benchmarks.baselines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run(model_dir: str, steps: int, seq: int, mask: bool, clip: bool, num_items: bool, fused_lora: bool,
        liger: bool, attention: str = "auto") -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from studio.train.fastlora import enable_fused_lora
    from studio.models import ALL_LINEAR, detect_device, load_base_for_training, prefer_sdpa_backend

    device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: the demo model, to test this script
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = load_base_for_training(model_dir, "lora", detect_device(), True, attention=attention)
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, lora_dropout=0.0, target_modules=ALL_LINEAR,
                                             bias="none", task_type="CAUSAL_LM"))
    if fused_lora:
        enable_fused_lora(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=device == "cuda")
    generator = torch.Generator().manual_seed(0)
    rates, loss = [], None
    for _ in range(steps + 2):
        ids = torch.randint(0, model.config.vocab_size, (1, seq), generator=generator).to(device)
        inputs = {"input_ids": ids, "labels": ids}
        if mask:
            inputs["attention_mask"] = torch.ones_like(ids)
        if num_items:
            inputs["num_items_in_batch"] = torch.tensor(seq - 1, device=device)
        synchronize(device)
        start = time.time()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"), prefer_sdpa_backend(attention):
            loss = model(**inputs).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(trainable, 1.0).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        synchronize(device)
        rates.append(seq / (time.time() - start))
    return {"name": "loop", "mask": mask, "clip": clip, "num_items": num_items, "fused_lora": fused_lora,
            "liger": liger, "attention": attention, "tokens_per_s": round(statistics.median(rates[2:]), 1),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
            "last_loss": round(loss.item(), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--mask", action="store_true")
    parser.add_argument("--clip", action="store_true")
    parser.add_argument("--num-items", action="store_true")
    parser.add_argument("--no-fused-lora", dest="fused_lora", action="store_false")
    parser.add_argument("--no-liger", dest="liger", action="store_false")
    parser.add_argument("--attention", choices=["auto", "flash", "cudnn", "efficient", "varlen"], default="auto")
    args = parser.parse_args(argv)
    result = run(args.model_dir, args.steps, args.seq, args.mask, args.clip, args.num_items, args.fused_lora,
                 args.liger, args.attention)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
