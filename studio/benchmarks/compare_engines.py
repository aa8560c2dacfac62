"""The studio engine side by side with the seed recipe, plain Hugging Face and Unsloth, one process each.

    python -m studio.benchmarks.compare_engines MODEL_DIR OUT_DIR [--steps 10] [--only NAME ...]
        [--unsloth-path DIR] [--gpus N]

MODEL_DIR: a model folder (`python -m studio.benchmarks.random_model` makes the R1-Distill-Qwen-7B
architecture with random weights). Each config runs in its own process so that one's memory cannot
leak into the next; results go to OUT_DIR/results.jsonl and a Markdown table is printed. Unsloth runs
only when --unsloth-path points at a folder where it is installed (it pins other library versions).
--gpus N runs N configs at a time, each alone on its own GPU of the same model (a log is kept only for a
config that failed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

# name -> (kind, arguments). "studio" runs `python -m studio bench`; "baseline" the reference loops.
CONFIGS = {
    # The studio engine: fused LoRA linear (studio.train.fastlora), Liger kernels, the flash kernel per sequence
    # (studio.attention), QLoRA without the fp32 upcast. The 4096-token configs checkpoint ("on") so that they
    # compare with the peers at their memory; the variants turn one lever on or off. The mix configs pack rows
    # into sequences of up to 4096 tokens, one a step (studio.train.packing), and keep the studio's default (`auto`: no
    # recompute where the run fits), what a user of this GPU gets.
    "studio-lora": ("studio", ["--method", "lora", "--data", "fixed", "--liger", "--checkpointing", "on"]),
    "studio-lora-plain": ("studio", ["--method", "lora", "--data", "fixed", "--no-fused-lora", "--attention", "auto",
                                     "--checkpointing", "on"]),
    "studio-lora-peft": ("studio", ["--method", "lora", "--data", "fixed", "--liger", "--no-fused-lora",
                                    "--checkpointing", "on"]),
    "studio-lora-sdpa": ("studio", ["--method", "lora", "--data", "fixed", "--liger", "--attention", "flash",
                                    "--checkpointing", "on"]),
    "studio-lora-offload": ("studio", ["--method", "lora", "--data", "fixed", "--liger", "--checkpointing", "offload"]),
    "studio-lora-nockpt": ("studio", ["--method", "lora", "--data", "fixed", "--liger", "--checkpointing", "off"]),
    "studio-qlora": ("studio", ["--method", "qlora", "--data", "fixed", "--liger", "--checkpointing", "on"]),
    "studio-qlora-upcast": ("studio", ["--method", "qlora", "--data", "fixed", "--liger", "--qlora-upcast",
                                       "--checkpointing", "on"]),
    "studio-qlora-offload": ("studio", ["--method", "qlora", "--data", "fixed", "--liger", "--checkpointing", "offload"]),
    # Lengths a little under 4096 that change every step: what shape changes cost (compare with studio-lora).
    "studio-lora-vary": ("studio", ["--method", "lora", "--data", "vary", "--liger", "--checkpointing", "on"]),
    "studio-lora-vary-sdpa": ("studio", ["--method", "lora", "--data", "vary", "--liger", "--attention", "flash",
                                         "--checkpointing", "on"]),
    # The same with PyTorch's allocator growing segments in place (new tensor sizes every step otherwise need
    # new blocks): a third element sets environment variables for that config's process.
    "studio-lora-vary-expandable": ("studio", ["--method", "lora", "--data", "vary", "--liger", "--checkpointing", "on"],
                                    {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
    "studio-lora-mix": ("studio", ["--method", "lora", "--data", "mix", "--packing", "--liger"]),
    "studio-lora-mix-ckpt": ("studio", ["--method", "lora", "--data", "mix", "--packing",
                                        "--liger", "--checkpointing", "on"]),
    "studio-lora-mix-sdpa": ("studio", ["--method", "lora", "--data", "mix", "--packing",
                                        "--liger", "--attention", "flash"]),
    # One row a step, as the seed's preset trained: what packing by tokens buys on the same data.
    "studio-lora-mix-onerow": ("studio", ["--method", "lora", "--data", "mix", "--liger"]),
    "studio-qlora-mix": ("studio", ["--method", "qlora", "--data", "mix", "--packing", "--liger"]),
    "studio-qlora-mix-sdpa": ("studio", ["--method", "qlora", "--data", "mix", "--packing",
                                         "--liger", "--attention", "flash"]),
    "seed": ("baseline", ["seed", "fixed"]),
    "seed-mix": ("baseline", ["seed", "mix"]),
    "hf-lora": ("baseline", ["hf-lora", "fixed"]),
    "hf-qlora": ("baseline", ["hf-qlora", "fixed"]),
    "hf-lora-mix": ("baseline", ["hf-lora", "mix"]),
    "hf-qlora-mix": ("baseline", ["hf-qlora", "mix"]),
    "unsloth-lora": ("unsloth", ["unsloth-lora", "fixed"]),
    "unsloth-qlora": ("unsloth", ["unsloth-qlora", "fixed"]),
    "unsloth-lora-mix": ("unsloth", ["unsloth-lora", "mix"]),
    "unsloth-qlora-mix": ("unsloth", ["unsloth-qlora", "mix"]),
}
# What a plain run of this script compares (the variants above are for measuring one lever at a time).
DEFAULT_CONFIGS = ["studio-lora", "studio-lora-offload", "studio-lora-plain", "studio-qlora", "studio-qlora-offload",
                   "studio-lora-mix", "studio-qlora-mix", "seed", "seed-mix", "hf-lora", "hf-qlora", "hf-lora-mix",
                   "hf-qlora-mix", "unsloth-lora", "unsloth-qlora", "unsloth-lora-mix", "unsloth-qlora-mix"]


def command_for(name: str, model_dir: str, steps: int) -> tuple[str, list[str]]:
    kind, arguments = CONFIGS[name][:2]
    if kind == "studio":
        return kind, [sys.executable, "-m", "studio", "bench", "--model", model_dir, "--name", name, "--steps",
                      str(steps), "--json", *arguments]
    return kind, [sys.executable, "-m", "studio.benchmarks.baselines", model_dir, *arguments, "--steps", str(steps)]


def parse(output: str) -> dict | None:
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
        if line.startswith("{") and '"tokens_per_s"' in line:
            return json.loads(line)
    return None


# Same seed, same first batch, same initial weights: the fast path's first loss (fused LoRA linear, Liger's
# fused cross-entropy) must equal the plain path's (PEFT's forward, the model's own loss) within bf16 rounding.
GUARD_PAIRS = (("studio-lora", "studio-lora-plain"),)
BF16_RELATIVE_TOLERANCE = 1e-2


def correctness_guard(results: list[dict]) -> dict | None:
    """First loss: the forward (B = 0 at the start, so the fused cross-entropy and base path). Last loss: after
    the steps, so it also checks that both paths computed the same LoRA gradients."""
    by_name = {result["config"]: result for result in results}
    for fast, plain in GUARD_PAIRS:
        if "first_loss" in by_name.get(fast, {}) and "first_loss" in by_name.get(plain, {}):
            report = {"guard": f"{fast} vs {plain}", "ok": True}
            for key in ("first_loss", "last_loss"):
                if key in by_name[fast] and key in by_name[plain]:
                    a, b = by_name[fast][key], by_name[plain][key]
                    relative = abs(a - b) / max(abs(b), 1e-9)
                    report[key] = {"fast": a, "plain": b, "relative_difference": relative}
                    report["ok"] = report["ok"] and relative <= BF16_RELATIVE_TOLERANCE
            return report
    return None


def run_config(name: str, args, gpu: str | None) -> dict:
    """One config in its own process (on one GPU when `gpu` is set); its log is kept only if it failed."""
    kind, command = command_for(name, args.model_dir, args.steps)
    env = dict(os.environ, **(CONFIGS[name][2] if len(CONFIGS[name]) > 2 else {}))
    if kind == "unsloth":
        env["PYTHONPATH"] = os.pathsep.join([args.unsloth_path, os.getcwd()])
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    start = time.time()
    try:
        process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
        output = process.stdout + process.stderr
    except subprocess.TimeoutExpired as error:
        output = f"timed out after {args.timeout}s\n{error.stdout or ''}"
    result = parse(output)
    if result is None:
        (Path(args.out_dir) / f"{name}.log").write_text(output)
        result = {"status": "failed", "error": output.strip().splitlines()[-1:] or [""]}
    result.update(config=name, wall_s=round(time.time() - start, 1))
    if gpu is not None:
        result["gpu"] = gpu
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--unsloth-path")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per config")
    parser.add_argument("--gpus", type=int, default=1,
                        help="run this many configs at once, each alone on its own GPU (same GPU model)")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or [name for name in DEFAULT_CONFIGS if CONFIGS[name][0] != "unsloth" or args.unsloth_path]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    free = queue.Queue()
    for gpu in range(args.gpus):
        free.put(str(gpu) if args.gpus > 1 else None)
    lock = threading.Lock()

    def run_on_a_free_gpu(name: str) -> dict:
        gpu = free.get()
        try:
            result = run_config(name, args, gpu)
        finally:
            free.put(gpu)
        with lock:
            print(json.dumps(result), flush=True)
            with open(out / "results.jsonl", "a") as handle:
                handle.write(json.dumps(result) + "\n")
        return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.gpus) as pool:
        results = list(pool.map(run_on_a_free_gpu, names))  # in the order asked, whatever order they end in
    guard = correctness_guard(results)
    if guard:
        print(json.dumps(guard))
        with open(out / "results.jsonl", "a") as handle:
            handle.write(json.dumps(guard) + "\n")
    print("\n| config | data | tokens/s | peak GiB |\n|---|---|---|---|")
    for result in results:
        speed = result.get("tokens_per_s")
        print(f"| {result['config']} | {result.get('data', '')} | "
              f"{'—' if speed is None else f'{speed:,.0f}'} | {result.get('peak_gib', '—')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
