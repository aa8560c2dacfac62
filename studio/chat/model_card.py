"""What a shared fine-tune says about itself, in words: its settings, its loss, and the model card (README.md)
that goes with the adapter in the zip and on the Hub, in place of PEFT's blank template."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from studio.config import DEMO_MODEL, DEMO_MODEL_DIR

def base_model_id(model: str | None) -> str:
    """The base model as others can name it: its Hub id, `demo` for the bundled demo model, or a local folder's
    name alone (where it lay on this machine means nothing elsewhere)."""
    model = (model or DEMO_MODEL).strip()
    if model == DEMO_MODEL:
        return DEMO_MODEL
    if is_local_path(model):
        folder = Path(model).expanduser()
        if folder.resolve() == DEMO_MODEL_DIR.resolve():
            return DEMO_MODEL
        return folder.name or "a local model"
    return model


def is_local_path(value: str) -> bool:
    """Whether a string is a path on this machine (absolute, home-relative, or a Windows drive's)."""
    return os.path.isabs(value) or value.startswith(("~", "\\\\")) or (len(value) > 2 and value[1] == ":"
                                                                        and value[2] in "\\/")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings_in_words(config: dict) -> list[tuple[str, str]]:
    """A run's settings as (what, value) lines a reader understands: no raw keys and no empty values."""
    if not config:
        return []
    lines: list[tuple[str, str]] = []
    if config.get("model"):
        lines.append(("Base model", base_model_id(config["model"])))
    method = config.get("method", "lora")
    lines.append(("Method", "QLoRA: LoRA on the base's 4-bit (NF4) weights" if method == "qlora"
                  else "LoRA on the base's full-precision weights"))
    if config.get("lora_r"):
        alpha = config.get("lora_alpha") or config["lora_r"]
        lines.append(("LoRA rank and alpha", f"rank {config['lora_r']}, alpha {alpha} (updates scaled by "
                                             f"{alpha / config['lora_r']:g})"))
    dropout = config.get("lora_dropout")
    if dropout is not None:
        lines.append(("LoRA dropout", "none" if not dropout else f"{dropout:g}"))
    targets = config.get("target_modules")
    if targets:
        lines.append(("Layers adapted", {"all-linear": "every linear layer (attention and MLP)",
                                         "attention": "the attention projections (q, k, v, o)"}.get(targets, str(targets))))
    if config.get("learning_rate"):
        rate = f"{config['learning_rate']:g}"
        if config.get("scheduler"):
            rate += f", {config['scheduler']} schedule"
        warmup = config.get("warmup")
        if warmup:
            rate += f", warm-up {warmup:.0%} of the steps" if warmup < 1 else f", warm-up {warmup:g} steps"
        lines.append(("Learning rate", rate))
    if (config.get("max_steps") or -1) > 0:
        lines.append(("Length", f"{config['max_steps']} steps"))
    elif config.get("epochs"):
        epochs = config["epochs"]
        lines.append(("Length", f"{_number(epochs)} epoch{'' if epochs == 1 else 's'} over the data"))
    if config.get("batch_size"):
        accumulation = config.get("grad_accum") or 1
        rows = "packed sequences" if config.get("packing") else "rows"
        batch = f"{config['batch_size'] * accumulation} {rows} a step"
        if accumulation > 1:
            batch += f" ({config['batch_size']} at a time, gradients accumulated over {accumulation})"
        lines.append(("Batch", batch))
    if config.get("max_length"):
        lines.append(("Longest row", f"{config['max_length']:,} tokens (longer rows are cut)"))
    split = config.get("eval_split")
    if split is not None:
        lines.append(("Held out for evaluation", "nothing: every row trained" if not split else f"{split:.0%} of rows"))
    if config.get("seed") is not None:
        lines.append(("Seed", str(config["seed"])))
    speedups = [name for key, name in (("packing", "rows packed into full sequences"),
                                       ("liger", "Liger kernels"), ("fused_lora", "fused LoRA matmuls"),
                                       ("gradient_checkpointing", "gradient checkpointing"),
                                       ("offload_checkpoints", "checkpoints offloaded to CPU memory"))
                if config.get(key)]
    if speedups:
        lines.append(("Speed and memory", ", ".join(speedups) + " (the same training, computed faster or in "
                                                                 "less memory)"))
    mapping = config.get("mapping")
    if mapping:
        lines.append(("Fields read", ", ".join(f"{role} from “{name}”" for role, name in mapping.items())))
    return lines


@dataclass(frozen=True)
class LossSummary:
    """The loss at the last logged step, and the lowest loss and its step (a run's best is not its last)."""

    last_step: int
    last_loss: float
    lowest_step: int
    lowest_loss: float
    steps: int  # logged steps

    def words(self) -> str:
        text = f"final loss {self.last_loss:.4f} at step {self.last_step}"
        if self.lowest_step != self.last_step:
            text += f"; lowest {self.lowest_loss:.4f} at step {self.lowest_step}"
        return text


def loss_summary(metrics: list[dict]) -> LossSummary | None:
    points = [(row["step"], row["loss"]) for row in metrics if row.get("loss") is not None and "step" in row]
    if not points:
        return None
    last = points[-1]
    lowest = min(points, key=lambda point: point[1])
    return LossSummary(last[0], last[1], lowest[0], lowest[1], len(points))


def loss_samples(metrics: list[dict], count: int = 8) -> list[tuple[int, float]]:
    """About `count` (step, loss) points spread over the run, its first and last included."""
    points = [(row["step"], row["loss"]) for row in metrics if row.get("loss") is not None and "step" in row]
    if len(points) <= count:
        return points
    picks = sorted({round(index * (len(points) - 1) / (count - 1)) for index in range(count)})
    return [points[index] for index in picks]


def sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    low, high = min(values), max(values)
    return "".join(bars[round((value - low) / (high - low) * (len(bars) - 1)) if high > low else 0]
                   for value in values)


def data_summary(config: dict, status: dict) -> list[tuple[str, str]]:
    """The training data in words: its file's name (never where it lay) and its rows."""
    lines = []
    if config.get("data"):
        lines.append(("Training file", Path(str(config["data"])).name))
    data = status.get("data") or {}
    if data.get("rows_read") is not None:
        rows = f"{data['rows_read']:,} read"
        if data.get("train_rows") is not None:
            rows += f", {data['train_rows']:,} trained on"
        if data.get("eval_rows"):
            rows += f", {data['eval_rows']:,} held out for evaluation"
        lines.append(("Rows", rows))
    if data.get("rows_left_out"):
        lines.append(("Rows left out", f"{data['rows_left_out']:,} with errors"))
    if data.get("rows_truncated"):
        lines.append(("Rows cut", f"{data['rows_truncated']:,} longer than the longest row setting"))
    return lines


def model_card(*, name: str, config: dict, status: dict, metrics: list[dict]) -> str:
    """README.md for a shared adapter: base, data, settings, loss, and how to load it with PEFT."""
    base = base_model_id(config.get("model"))
    on_hub = "/" in base
    front = ["---", "library_name: peft", "pipeline_tag: text-generation"]
    if on_hub:
        front.append(f"base_model: {base}")
    front += ["tags:", "- lora", "- peft", "- deepseek-r1", "- reasoning", "---", ""]
    base_words = (f"[{base}](https://huggingface.co/{base})" if on_hub else
                  "the demo model bundled with R1 LoRA Studio (a tiny Qwen2, assets/demo-model)" if base == DEMO_MODEL
                  else f"`{base}`")
    lines = [*front, f"# {name}", "",
             f"A LoRA adapter for {base_words}, fine-tuned with R1 LoRA Studio on reasoning traces "
             "(`<think>…</think>` then the answer).", ""]
    data = data_summary(config, status)
    if data:
        lines += ["## Training data", "", *[f"- **{what}:** {value}" for what, value in data], ""]
    settings = settings_in_words(config)
    if settings:
        lines += ["## Settings", "", "| setting | value |", "|---|---|",
                  *[f"| {what} | {value} |" for what, value in settings], ""]
    loss = loss_summary(metrics)
    if loss:
        samples = loss_samples(metrics)
        lines += ["## Training loss", "", f"{loss.words().capitalize()} ({loss.steps} steps logged).", "",
                  f"`{sparkline([value for _, value in samples])}`", "", "| step | loss |", "|---|---|",
                  *[f"| {step} | {value:.4f} |" for step, value in samples], ""]
    load_base = base if base != DEMO_MODEL else "path/to/r1-lora-studio/assets/demo-model"
    lines += ["## How to load it", "",
              "Unzip the adapter (or use its Hub repository id), then load the base and put the adapter on it:", "",
              "```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "", f'base = AutoModelForCausalLM.from_pretrained("{load_base}", dtype="auto")',
              f'model = PeftModel.from_pretrained(base, "{name}")  # this folder, or its Hub id',
              f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", "",
              "R1 models reason before they answer: sample at temperature 0.6, top-p 0.95, and leave room for "
              "thousands of new tokens.", ""]
    return "\n".join(lines)
