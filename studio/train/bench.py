"""`python -m studio bench`: training speed and memory through the studio's own training path.

Builds the model (default: the R1-Distill-Qwen-7B architecture with random weights on a GPU, the demo model
on CPU), writes synthetic R1 rows — fixed 4096-token sequences, or a variable-length mix (log-normal,
mean ≈ 1.5k tokens, capped at 4096, like real R1 distillation sets) — trains N steps with TrainingJob and
reads the run's metrics: median tokens/s over the steps after warm-up, peak GPU memory, and the fraction
of the compute ceiling (useful FLOPs per token × tokens/s ÷ the GPU's dense bf16 rate).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import TrainerCallback

from studio.config import DEMO_MODEL, STUDIO_HOME

RANDOM_PREFIX = "random:"
WARMUP_STEPS = 2


@dataclass
class BenchResult:
    name: str
    model: str
    method: str
    data: str
    steps: int
    tokens_per_s: float
    peak_gib: float | None
    ceiling_fraction: float | None
    first_loss: float
    last_loss: float
    settings: dict

    def row(self) -> str:
        peak = "—" if self.peak_gib is None else f"{self.peak_gib:.2f}"
        ceiling = "—" if self.ceiling_fraction is None else f"{self.ceiling_fraction * 100:.0f}%"
        return (f"| {self.name} | {self.method} | {self.data} | {self.tokens_per_s:,.0f} | {peak} | {ceiling} | "
                f"{self.first_loss:.3f} → {self.last_loss:.3f} |")


TABLE_HEADER = ("| config | method | data | tokens/s | peak GiB | of ceiling | loss |\n"
                "|---|---|---|---|---|---|---|")


def resolve_bench_model(name: str | None) -> str:
    """`random:qwen2-7b` / `random:llama-8b` are built once (random weights) into the studio's cache."""
    import torch

    name = name or (f"{RANDOM_PREFIX}qwen2-7b" if torch.cuda.is_available() else DEMO_MODEL)
    if not name.startswith(RANDOM_PREFIX):
        return name
    from studio.benchmarks.random_model import ARCHITECTURES, build

    arch = name[len(RANDOM_PREFIX):]
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose {', '.join(ARCHITECTURES)}")
    folder = STUDIO_HOME / "bench-models" / arch
    if not (folder / "config.json").exists():
        build(str(folder), arch, "cuda" if torch.cuda.is_available() else "cpu")
    return str(folder)


def step_rates(metrics: list[dict]) -> list[float]:
    """Tokens/s of each step from the cumulative token count and the log times."""
    rows = [row for row in metrics if "loss" in row and "tokens_seen" in row]
    return [(b["tokens_seen"] - a["tokens_seen"]) / (b["time"] - a["time"])
            for a, b in zip(rows, rows[1:]) if b["time"] > a["time"]]


def run_bench(*, name: str = "studio", model: str | None = None, method: str = "lora", data: str = "fixed",
              steps: int = 10, seq: int = 4096, batch_size: int = 1, lora_r: int = 32, lora_alpha: int = 32,
              lora_dropout: float = 0.0, packing: bool = False, liger: bool = False,
              gradient_checkpointing: bool | None = None, offload: bool | None = None, fused_lora: bool = True,
              qlora_upcast: bool = False, attention: str = "varlen", profile_dir: str | None = None,
              out_dir: str | None = None) -> BenchResult:
    from studio.benchmarks.synthetic_data import write
    from studio.train.estimate import ModelShape, flops_per_token, gpu_spec
    from studio.models import detect_device
    from studio.runs import COMPLETED
    from studio.train.job import TrainConfig, TrainingJob

    target = resolve_bench_model(model)
    device = detect_device()
    work = Path(out_dir or tempfile.mkdtemp(prefix="studio-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / f"{data}.jsonl"
    rows_needed = (steps + WARMUP_STEPS) * batch_size
    write(str(data_path), rows=rows_needed * (4 if data == "mix" else 1) + 8, tokens=seq, mix=data == "mix",
          vary=data == "vary")
    config = TrainConfig(data=str(data_path), output=str(work / f"run-{name}"), model=target, method=method,
                         lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, max_steps=steps,
                         batch_size=batch_size, grad_accum=1, max_length=seq, warmup=0, packing=packing,
                         liger=liger, gradient_checkpointing=gradient_checkpointing, seed=0,
                         offload_checkpoints=offload, fused_lora=fused_lora,
                         qlora_upcast=qlora_upcast,
                         attention=attention)
    callbacks = [ProfileSteps(Path(profile_dir))] if profile_dir else []
    job = TrainingJob(config, callbacks=callbacks)
    status = job.run()
    if status["state"] != COMPLETED:
        raise RuntimeError(f"bench run {name} failed: {status.get('cause')} — {status.get('fix')}")
    metrics = job.metrics()
    rates = step_rates(metrics)[WARMUP_STEPS - 1:] or step_rates(metrics)
    tokens_per_s = statistics.median(rates) if rates else 0.0
    peaks = [row["gpu_mem_gib"] for row in metrics if "gpu_mem_gib" in row]
    ceiling = None
    spec = gpu_spec(device.name) if device.kind == "cuda" else None
    if spec:
        shape = ModelShape.for_model(target)
        useful = flops_per_token(shape, lora_r, config.target_modules, seq, checkpointing=False)
        ceiling = tokens_per_s * useful / (spec.bf16_tflops * 1e12)
    losses = [row["loss"] for row in metrics if "loss" in row]
    settings = {key: value for key, value in asdict(config).items()
                if key in ("lora_r", "lora_alpha", "lora_dropout", "batch_size", "max_length", "packing", "liger",
                           "gradient_checkpointing", "target_modules", "fused_lora",
                           "offload_checkpoints", "qlora_upcast", "attention")}
    settings["device"] = device.describe()
    return BenchResult(name, Path(target).name if Path(target).exists() else target, method, data, len(losses),
                       round(tokens_per_s, 1), max(peaks) if peaks else None,
                       None if ceiling is None else round(ceiling, 3), losses[0], losses[-1], settings)


class ProfileSteps(TrainerCallback):
    """Profiles two steps after warm-up into `folder` (see write_profile)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.profiler = None
        self.started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        import torch

        if state.global_step == WARMUP_STEPS and self.profiler is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None and state.global_step == WARMUP_STEPS + 2:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.time() - self.started
            self.profiler.__exit__(None, None, None)
            write_profile(self.profiler, self.folder, wall)


def write_profile(profiler, folder: Path, wall_s: float) -> None:
    """profile.txt: by GPU time; profile_host.txt: by host time (CUDA runtime calls such as cudaMalloc or a
    synchronize show up there, not in the first); profile_by_op.txt: by GPU time and input shape."""
    folder.mkdir(parents=True, exist_ok=True)
    averages = profiler.key_averages()
    # Kernels are the events with device time and no host time; an op's own row repeats its kernels' time.
    kernels = sum(event.self_device_time_total for event in averages
                  if event.self_device_time_total and not event.self_cpu_time_total) / 1e6
    sort = "self_cuda_time_total" if kernels else "self_cpu_time_total"
    summary = (f"wall {wall_s:.3f} s for 2 steps (profiler overhead included); GPU kernels {kernels:.3f} s "
               f"({kernels / wall_s:.0%} of wall)\n\n")
    (folder / "profile.txt").write_text(summary + averages.table(sort_by=sort, row_limit=60, max_name_column_width=90))
    (folder / "profile_host.txt").write_text(
        summary + averages.table(sort_by="self_cpu_time_total", row_limit=60, max_name_column_width=90))
    (folder / "profile_by_op.txt").write_text(
        profiler.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=80, max_name_column_width=70))


def print_results(results: list[BenchResult], as_json: bool) -> None:
    if as_json:
        for result in results:
            print(json.dumps(asdict(result)))
        return
    print(TABLE_HEADER)
    for result in results:
        print(result.row())
