"""A LoRA adapter applied to chosen rows of a batch: both chat panes from one forward pass, compile-friendly.

PEFT mixes adapters in one batch (`adapter_names=[...]`) by splitting every LoRA layer's input into per-adapter
sub-batches with Python lists of indices: about 48 ms a decode step on a 7B, and nothing `torch.compile` or a CUDA
graph can capture. Here each target Linear becomes `base(x) + B(A(x) * row_mask) * scale`, with one `row_mask`
tensor shared by every layer (1 for the LoRA rows, 0 for the base rows): a base row gets exactly the base model's
output (its delta is a zero added in float32 and rounded back), a LoRA row what PEFT computes, and a decode step
is the same few kernels whatever the mix of rows.

Only plain LoRA is read this way (PEFT's `LoraConfig` without DoRA, bias training, extra saved modules or
per-layer patterns); `applicable(adapter_dir)` says why not otherwise, and the chat then uses PEFT as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

MAX_ROWS = 512  # the widest batch the mask covers (batch compare pads to buckets at most this wide)
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def applicable(adapter_dir: str | Path) -> str | None:
    """None when the adapter is plain LoRA this module applies; else why not (the chat then uses PEFT)."""
    try:
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"adapter_config.json unreadable ({error})"
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        return f"a {config.get('peft_type')} adapter, not LoRA"
    if config.get("use_dora"):
        return "DoRA"
    if config.get("bias", "none") != "none":
        return f"trained biases (bias={config.get('bias')})"
    if config.get("modules_to_save"):
        return "fully trained modules (modules_to_save)"
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return "per-layer ranks"
    if config.get("fan_in_fan_out"):
        return "fan_in_fan_out weights"
    if not any((Path(adapter_dir) / name).exists() for name in WEIGHTS):
        return "no adapter weights file"
    return None


class RowMaskedLoRALinear(nn.Module):
    """`base(x)` plus the LoRA delta on the rows whose mask is 1."""

    def __init__(self, base: nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float,
                 row_mask: torch.Tensor):
        super().__init__()
        self.base_layer = base
        self.lora_a = nn.Parameter(lora_a, requires_grad=False)  # (rank, in)
        self.lora_b = nn.Parameter(lora_b, requires_grad=False)  # (out, rank)
        self.scale = scale
        self.register_buffer("row_mask", row_mask, persistent=False)  # the same tensor in every layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        low = nn.functional.linear(x.to(self.lora_a.dtype), self.lora_a)
        mask = self.row_mask[: x.shape[0]].view(-1, *([1] * (x.dim() - 1))).to(low.dtype)
        delta = nn.functional.linear(low * mask, self.lora_b) * self.scale
        return (result + delta).to(result.dtype)


class RowLoRA:
    """The adapter attached to a base model; `rows([True, False, ...])` says which rows of the next batch get it."""

    def __init__(self, model: nn.Module, adapter_dir: str | Path, dtype: torch.dtype | None = None):
        why = applicable(adapter_dir)
        if why:
            raise ValueError(f"{adapter_dir}: {why}; load it with PEFT")
        adapter_dir = Path(adapter_dir)
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
        self.scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        weights = _read_weights(adapter_dir)
        parameter = next(model.parameters())
        self.row_mask = torch.zeros(MAX_ROWS, dtype=torch.float32, device=parameter.device)
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in weights.items():
            for part in ("lora_A", "lora_B"):
                marker = f".{part}."
                if marker in key:
                    module = key.split(marker)[0]
                    pairs.setdefault(_module_path(module), {})[part] = tensor
        if not pairs:
            raise ValueError(f"{adapter_dir}: no LoRA weights found in the adapter file")
        names = dict(model.named_modules())
        self.layers: list[RowMaskedLoRALinear] = []
        for path, pair in sorted(pairs.items()):
            module = names.get(path)
            if module is None or "lora_A" not in pair or "lora_B" not in pair:
                raise ValueError(f"{adapter_dir}: the adapter's layer {path} is not in this base model: is it "
                                 "the base the adapter was trained on?")
            # In the base's dtype unless asked: PEFT upcasts a bf16 base's adapter to float32, but float32 products
            # of this size run without tensor cores (a fifth of a 7B decode step); the LoRA rows then differ from
            # PEFT's by bf16 rounding (the bench reports how much), the base rows not at all.
            dtype = dtype or parameter.dtype
            wrapped = RowMaskedLoRALinear(module, pair["lora_A"].to(parameter.device, dtype),
                                          pair["lora_B"].to(parameter.device, dtype), self.scale, self.row_mask)
            parent_path, _, child = path.rpartition(".")
            setattr(names[parent_path] if parent_path else model, child, wrapped)
            self.layers.append(wrapped)

    def rows(self, with_lora: list[bool]) -> None:
        """Which rows of the next batch get the adapter (the others stay the base model)."""
        if len(with_lora) > MAX_ROWS:
            raise ValueError(f"at most {MAX_ROWS} rows a batch")
        values = torch.zeros(MAX_ROWS, dtype=torch.float32)
        values[: len(with_lora)] = torch.tensor([1.0 if flag else 0.0 for flag in with_lora])
        self.row_mask.copy_(values)  # in place: the compiled step reads this very tensor


def _read_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    safetensors = adapter_dir / "adapter_model.safetensors"
    if safetensors.exists():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    return torch.load(adapter_dir / "adapter_model.bin", map_location="cpu", weights_only=True)


def _module_path(key: str) -> str:
    """A PEFT weight's module (`base_model.model.model.layers.0.self_attn.q_proj`) as the base model names it."""
    for prefix in ("base_model.model.", "base_model."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key
