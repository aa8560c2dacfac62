"""Memory and time of a LoRA / QLoRA run, estimated before it starts.

    shape = ModelShape.for_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")   # no download needed
    result = estimate(shape, config, device)      # config: a TrainConfig, a dict, or None for the defaults
    result.summary()  # "≈ 22.9 GiB of 139 GiB — fits · ≈ 7,500 tokens/s, ≈ 4.4 s per step"

The model (docs/estimate.md has the formulae and the calibration table):
- memory = weights + LoRA weights, gradients and AdamW states + saved activations + the loss head (the
  fp32 logits) + a fixed CUDA overhead. Every term follows what PyTorch, transformers and PEFT keep alive
  during a training step of this studio (bf16 autocast on a GPU, fp32 on CPU); the coefficients were
  checked against torch.cuda.max_memory_allocated on an H200.
- time = a FLOP model (4 × base params + 6 × LoRA params + attention, per token; plus one more forward of
  the decoder layers with gradient checkpointing) at a calibrated fraction of the GPU's bf16 rate, plus
  the memory-bound work of the LoRA side paths, plus a fixed per-step cost. Other GPUs are scaled by their
  bf16 TFLOP/s and memory bandwidth from a table; an unknown GPU gets no time rather than an invented one.

Cheap to import: no torch, no transformers, no gradio.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.config import DEFAULT_MAX_LENGTH, DEMO_MODEL

GIB = 2**30

# --------------------------------------------------------------------------------------------------
# Model shapes

# The two bases the studio is made for, so that an estimate needs no download.
# Qwen-7B: the published config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-7B.
R1_DISTILL_QWEN_7B_CONFIG = {
    "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False,
}
# Llama-8B: the published config.json of deepseek-ai/DeepSeek-R1-Distill-Llama-8B (Llama 3.1 8B shape).
R1_DISTILL_LLAMA_8B_CONFIG = {
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    "attention_bias": False,
}
BUILTIN_CONFIGS = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": R1_DISTILL_QWEN_7B_CONFIG,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": R1_DISTILL_LLAMA_8B_CONFIG,
}

ALL_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")  # the seed recipe's targets
TARGETS = {"all-linear": ALL_LINEAR_MODULES, "attention": ATTENTION_MODULES}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only (Qwen2 / Llama) model."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    head_dim: int = 0  # 0: hidden // heads
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v
    name: str = ""

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @classmethod
    def from_config(cls, config: dict, name: str = "") -> "ModelShape":
        """From a transformers config.json (as a dict)."""
        if isinstance(config.get("text_config"), dict):  # multimodal wrappers keep the LM config inside
            config = {**config["text_config"], "tie_word_embeddings": config.get(
                "tie_word_embeddings", config["text_config"].get("tie_word_embeddings", False))}
        required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [key for key in required if not config.get(key)]
        if missing:
            raise ValueError(f"config.json of {name or 'the model'} lacks {', '.join(missing)}: "
                             "not a decoder-only language model the studio can estimate")
        heads = int(config["num_attention_heads"])
        return cls(
            hidden=int(config["hidden_size"]), intermediate=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]), heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads), vocab=int(config["vocab_size"]),
            # Qwen2 and Llama configs say it explicitly; transformers' generic default is True.
            tied_embeddings=bool(config.get("tie_word_embeddings", True)),
            head_dim=int(config.get("head_dim") or 0),
            qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
            name=name,
        )

    @classmethod
    def for_model(cls, name: str | None) -> "ModelShape":
        """The shape of `demo`, a model folder, a built-in Hub id, or a Hub id whose config.json is cached.

        Raises ValueError when the shape cannot be known without a download."""
        from studio.models import ModelNotFound, resolve_model

        name = (name or DEMO_MODEL).strip()
        if name in BUILTIN_CONFIGS and not Path(name).expanduser().exists():
            return cls.from_config(BUILTIN_CONFIGS[name], name=name)
        try:
            target = resolve_model(name)
        except ModelNotFound as error:
            raise ValueError(str(error)) from None
        path = Path(target)
        if path.exists():
            config_file = path / "config.json"
            if not config_file.exists():
                raise ValueError(f"{path} has no config.json: cannot tell the model's size.")
            return cls.from_config(json.loads(config_file.read_text(encoding="utf-8")), name=name)
        cached = _cached_hub_config(target)
        if cached is not None:
            return cls.from_config(cached, name=name)
        known = ", ".join(sorted(BUILTIN_CONFIGS))
        raise ValueError(
            f"Cannot estimate {name!r}: it is not one of the built-in bases ({known}) and its config.json is "
            f"not on this machine. Download it first (`huggingface-cli download {name} config.json`) or pass "
            "a local model folder.")

    # parameter counts ------------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear layer of one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_linear_params(self) -> int:
        """Weights of the linear layers of all decoder layers: what 4-bit quantization compresses."""
        return self.layers * sum(d_in * d_out for d_in, d_out in self.linear_shapes().values())

    def embedding_params(self) -> int:
        """Input embeddings plus lm_head (once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def other_params(self) -> int:
        """Everything kept in 16/32 bits under QLoRA: embeddings, lm_head, norms, q/k/v biases."""
        norms = self.layers * 2 * self.hidden + self.hidden
        biases = self.layers * (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return self.embedding_params() + norms + biases

    def total_params(self) -> int:
        return self.layer_linear_params() + self.other_params()

    def matmul_params(self) -> int:
        """Weights that take part in a matrix product per token: the layers' linears and lm_head."""
        return self.layer_linear_params() + self.vocab * self.hidden

    def lora_units(self, targets: str = "all-linear") -> int:
        """Sum of d_in + d_out over the adapted linears of the whole model (LoRA params = r × this)."""
        modules = _target_modules(targets)
        shapes = self.linear_shapes()
        return self.layers * sum(sum(shapes[module]) for module in modules)

    def lora_params(self, r: int, targets: str = "all-linear") -> int:
        """A LoRA of rank r on a d_in × d_out linear has r·(d_in + d_out) parameters (A and B)."""
        return r * self.lora_units(targets)


def _target_modules(targets: str) -> tuple[str, ...]:
    try:
        return TARGETS[targets]
    except KeyError:
        raise ValueError(f"target_modules must be all-linear or attention, not {targets!r}") from None


def _cached_hub_config(repo_id: str) -> dict | None:
    """config.json of a Hub model that is already in the local cache; never reaches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # malformed ids and the like: treat as not cached
        return None
    if isinstance(path, str) and os.path.exists(path):
        return json.loads(Path(path).read_text(encoding="utf-8"))
    return None


# --------------------------------------------------------------------------------------------------
# Constants. Measured figures: H200 (141 GB), random-weight R1-Distill-Qwen-7B architecture, LoRA r=32,
# manual loop (forward with labels under bf16 autocast, backward, AdamW step), peak =
# torch.cuda.max_memory_allocated, time = median step. Random weights train at the speed and in the memory
# of real ones. Two sources: the project's reference H200 measurements (seed 34.3 GiB / 11,106 tok/s, bf16
# LoRA + checkpointing 22.9 GiB / 7,379 tok/s, QLoRA nf4 + checkpointing 13.9 GiB / 7,270 tok/s) and a
# re-run of the same loop over more shapes (2026-11-28, torch 2.11, transformers 5.23, peft 0.21.2), listed
# in docs/estimate.md.

# Weights
BF16_BYTES, FP32_BYTES = 2, 4
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + fp32 absmax per 256×64
FP4_BYTES_PER_PARAM = 0.5 + 4 / 64  # bnb defaults (the seed recipe): no double quant, fp32 absmax per 64
# peft.prepare_model_for_kbit_training (studio.models calls it for QLoRA only with qlora_upcast) casts every
# non-4-bit parameter (embeddings, lm_head, norms, biases) to fp32; the fp32 residual then makes the MLP
# activations fp32 too. Measured with PEFT's LoRA forward: +3.8 GiB and 16 % more time per step than QLoRA
# without it (17.8 vs 14.0 GiB, 6,128 vs 7,086 tok/s, 7B, 1 × 4096, checkpointing); with the fused LoRA linear
# +3.1 GiB and 2.5 % more time (docs/benchmarks.md).
STUDIO_QLORA_UPCASTS = False  # TrainConfig.qlora_upcast's default: measured slower and larger
QLORA_UPCAST_SLOWDOWN = 0.6684 / 0.5780  # step time with / without the upcast, 7B, 1 × 4096, H200

# Trainable LoRA parameters: fp32 weights (PEFT upcasts bf16 adapters), fp32 grads, AdamW exp_avg and
# exp_avg_sq in fp32.
LORA_BYTES_PER_PARAM = {"weights": 4, "grads": 4, "optimizer": 8}

# Loss head: transformers upcasts the logits to fp32 for the loss; the peak is in the backward of
# log_softmax, with its saved output, the incoming gradient and the outgoing one alive: 3 × T × V × 4 bytes.
LOGITS_PEAK_BYTES_PER_ELEMENT = 12

# Liger's fused linear cross-entropy splits the tokens into chunks of about T / ceil(V / H) and keeps one
# chunk's fp32 logits and their gradient alive. Checked once: r=32, 1 × 4096 bf16 LoRA with Liger measured
# 17.16 GiB peak on the H200 (docs/benchmarks.md), 5.78 GiB under the same run without it.
LIGER_CHUNK_BYTES_PER_ELEMENT = 8

# Outside torch's allocator count: CUDA context, cuBLAS workspaces, allocator slack (the "tight" band above
# 85 % leaves room for fragmentation: reserved was 2-10 % above allocated up to 4096 tokens, 22 % at 32k).
CUDA_OVERHEAD_GIB = 1.0
CPU_PROCESS_OVERHEAD_GIB = 1.0  # Python, torch, transformers and the app itself, resident on CPU
TIGHT_FRACTION = 0.85

# Time: a least-squares fit to the reference 7,379 tok/s and 13 H200 runs of bf16 LoRA (1 × 4096 … 1 × 16384,
# 2 × 4096, 4 × 1024, 8 × 512 with checkpointing, 1 × 1024 … 1 × 4096 without, all-linear and q/k/v/o);
# held-out runs (Llama-8B, r=16, QLoRA, 32k tokens) came within ±12 % (docs/estimate.md).
H200_BF16_TFLOPS = 790.0  # measured dense bf16 matmul on the H200 (reference: ≈ 790 TFLOP/s)
H200_BANDWIDTH_TBS = 4.8
MATMUL_EFFICIENCY = 0.88  # fraction of the bf16 rate the executed matmul FLOPs run at
LORA_SIDE_S_PER_UNIT_TOKEN_PASS = 5.43e-12  # memory-bound LoRA path (casts, dropout, add) per (d_in+d_out)
STEP_OVERHEAD_S = {True: 0.096, False: 0.077}  # per micro-batch, with / without checkpointing
# Below this the GPU waits on the host (Python and kernel launches), per micro-batch and decoder layer:
# ≈ 0.30 s for the 28-layer 7B with checkpointing at 512-2048 tokens, ≤ 0.15 s without.
HOST_FLOOR_S_PER_LAYER = {True: 0.30 / 28, False: 0.14 / 28}
# QLoRA: dequantizing each 4-bit weight per pass (≈ reading it in bf16 once); reference: 7,270 vs 7,379 tok/s.
QLORA_DEQUANT_S_PER_PARAM_PASS = (4096 / 7270 - 4096 / 7379) / (3 * 6_525_288_448)
QLORA_HOST_FLOOR_FACTOR = 1.8  # bitsandbytes' Python layers: 0.55 s vs 0.31 s at 1 × 1024 on the H200


# The fast path (studio.train.fastlora + Liger), 2026-11-28 on the H200, 7B, r=32, 1 × 4096, checkpointing, `python -m
# studio.benchmarks.compare_engines`: LoRA 10,239 tok/s at 16.68 GiB, QLoRA (no upcast) 8,444 at 7.80 GiB. The
# fused LoRA linear keeps no second copy of each adapted input and makes none of PEFT's passes over it, so the
# per-layer copy term goes and the memory-bound side path shrinks to what this fits: 0.400 s a step against
# 0.286 s of matmuls and the fixed step cost.
FUSED_LORA_SIDE_S_PER_UNIT_TOKEN_PASS = 5.8e-13
# bitsandbytes dequantizes every 4-bit weight in each pass (forward, recompute, backward): 0.485 vs 0.400 s.
FUSED_QLORA_DEQUANT_S_PER_PARAM_PASS = (4096 / 8444 - 4096 / 10239) / (3 * 6_525_288_448)
# studio.train.offload: measured 16.68 → 16.28 GiB (LoRA) and 7.80 → 7.39 GiB (QLoRA): about half of the saved
# layer inputs leave the peak (the peak moves to the recompute of one layer, with a prefetched input beside
# it); 3 % slower for LoRA (9,922 vs 10,239 tok/s), no slower for QLoRA (8,562 vs 8,444).
OFFLOAD_SAVED_FRACTION_FREED = 0.40 / 0.77
# Without checkpointing the fast path ran slower than the FLOP model gives (14,245 tok/s at 1 × 4096): 12,536 and
# 13,235 tok/s in two runs of the comparison (2026-11-28; docs/benchmarks.md). The difference, per token and
# layer, fit to their mean (12,886): time the model has no term for yet (more live memory per step).
FUSED_NO_CHECKPOINTING_S_PER_TOKEN_LAYER = (4096 / 12886 - 4096 / 14245) / (4096 * 28)
OFFLOAD_SLOWDOWN = {"lora": 10239 / 9922, "qlora": 1.0}


@dataclass(frozen=True)
class GpuSpec:
    bf16_tflops: float | None  # dense bf16 (fp32 accumulate); None: no bf16 (the studio then trains in fp32)
    bandwidth_tbs: float
    fp32_tflops: float | None = None  # for cards without bf16


# Keyed by a substring of torch.cuda.get_device_name(); the longest matching key wins. H100/H200: measured
# equivalent (the rate measured on an H200); the others: the vendors' dense figures.
GPU_SPECS = {
    "H200": GpuSpec(H200_BF16_TFLOPS, H200_BANDWIDTH_TBS),
    "H100": GpuSpec(790, 3.35),
    "A100": GpuSpec(312, 2.0),
    "L40S": GpuSpec(362, 0.864),
    "L40": GpuSpec(181, 0.864),
    "L4": GpuSpec(121, 0.3),
    "A10G": GpuSpec(125, 0.6),
    "A6000": GpuSpec(155, 0.768),
    "RTX 4090": GpuSpec(165, 1.0),
    "T4": GpuSpec(None, 0.32, fp32_tflops=8.1),  # 65 TFLOP/s fp16 only; R1 must not train in fp16
    "V100": GpuSpec(None, 0.9, fp32_tflops=15.7),
}

# CPU: effective fp32 FLOP/s per core of a LoRA step on the demo model, measured on this project's 2-core
# machine (2026-11-28): 15,240 tok/s at 8 × 512 on 2 threads, 7,400-8,900 tok/s on 1 thread at 1 × 512 …
# 16 × 512, ≈ 8.0 MFLOP per token. Rough: another model, another CPU or a busy machine can be 2× off.
CPU_FLOPS_PER_CORE = 60e9
CPU_STEP_OVERHEAD_S = 0.02

# The error docs/estimate.md states, in one line for the Train tab.
STATED_ERROR = ("Measured error on an H200: memory −5 % to +2.3 %, speed ±6 % (LoRA) and ±12 % (QLoRA) for steps of "
                "max_length tokens, packed or not; repeated runs of one setting differ by up to 10 %; "
                "docs/estimate.md.")
# What the Train tab says instead on a CPU, where nothing was measured against a GPU's allocator.
CPU_ESTIMATE_NOTE = ("Rough CPU estimate: memory from the model's shape, time from this project's 2-core machine; "
                     "another CPU or a busy machine can be 2× off.")

FITS, TIGHT, WILL_NOT_FIT = "fits", "tight", "will not fit"
UNSUPPORTED = "unsupported"  # a setup the studio refuses (QLoRA without CUDA)
UNKNOWN = "unknown"  # the device's memory is unknown


def gpu_spec(device_name: str) -> GpuSpec | None:
    name = device_name.upper()
    for key in sorted(GPU_SPECS, key=len, reverse=True):
        if key.upper() in name:
            return GPU_SPECS[key]
    return None


# --------------------------------------------------------------------------------------------------
# The estimate


@dataclass
class Estimate:
    model: str
    method: str
    target_modules: str
    lora_r: int
    batch_size: int
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    offload_checkpoints: bool
    device: str
    device_kind: str
    device_memory_gib: float
    params_total: int
    params_lora: int
    breakdown_gib: dict[str, float]  # weights, lora_weights, lora_grads, optimizer_states, activations, logits, overhead
    peak_allocated_gib: float  # what torch.cuda.max_memory_allocated would show: the breakdown less overhead
    total_gib: float
    verdict: str  # fits | tight | will not fit (| unsupported | unknown)
    other_checkpointing_total_gib: float  # the total with gradient checkpointing switched the other way
    tokens_per_step: int  # batch_size × grad_accum × max_length: an upper bound (rows are often shorter)
    tokens_per_s: float | None
    seconds_per_step: float | None
    time_basis: str  # calibrated | rough | unknown
    notes: list[str] = field(default_factory=list)

    @property
    def badge(self) -> str:
        return self.verdict

    @property
    def fits(self) -> bool:
        return self.verdict in (FITS, TIGHT)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"badge": self.badge}

    def summary(self, with_verdict: bool = True) -> str:
        """One line of memory and time. `with_verdict` off: without "— fits" (for a badge that says it already)."""
        if self.verdict == UNSUPPORTED:
            return " ".join(self.notes[:1]) or "This setup cannot run on this device."
        memory = f"≈ {self.total_gib:.1f} GiB"
        if self.device_memory_gib > 0:
            memory += f" of {self.device_memory_gib:.0f} GiB" + (f" — {self.verdict}" if with_verdict else "")
        if self.tokens_per_s is None:
            time = f"time unknown for {self.device}"
        else:
            time = (("rough: " if self.time_basis == "rough" else "") + f"≈ {_round2(self.tokens_per_s)} tokens/s, "
                    f"≈ {_duration(self.seconds_per_step)} per step")
        line = f"{memory} · {time}"
        if self.verdict in (WILL_NOT_FIT, TIGHT):
            hint = self.hint()
            if hint:
                line += f"\n{hint}"
        return line

    def accuracy_note(self) -> str:
        """How far to trust the figures: the measured error on a CUDA device (measured on an H200), a rough
        estimate on a CPU."""
        return STATED_ERROR if self.device_kind == "cuda" else CPU_ESTIMATE_NOTE

    def hint(self) -> str:
        """What would bring the memory down, for a run that does not fit comfortably."""
        if not self.gradient_checkpointing and self.other_checkpointing_total_gib < self.total_gib:
            return f"With gradient checkpointing on: ≈ {self.other_checkpointing_total_gib:.1f} GiB."
        if self.batch_size > 1:
            return "Lower batch_size (raise grad_accum to keep the tokens per step) or max_length."
        if self.method == "lora" and self.device_kind == "cuda":
            return "Lower max_length, or switch to QLoRA (4-bit weights)."
        return "Lower max_length."


def _round2(value: float) -> str:
    """Two significant figures with thousands separators: 7,379 -> 7,400."""
    if value <= 0:
        return "0"
    digits = 1 - int(math.floor(math.log10(value)))
    rounded = round(value, digits)
    return f"{rounded:,.{digits}f}" if digits > 0 else f"{int(rounded):,}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _setting(config, key: str, default):
    if config is None:
        return default
    value = config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
    return default if value is None and key != "gradient_checkpointing" else value


def estimate(shape: ModelShape | str | None, config=None, device=None, *, qlora_upcast: bool | None = None,
             quant_bytes_per_param: float | None = None) -> Estimate:
    """Memory and time of one training run of `config` (a TrainConfig, a dict, or None) on `device`.

    shape: a ModelShape, or a model name for ModelShape.for_model. device: a studio.models.Device; None
    detects this machine's (that imports torch). qlora_upcast: model peft's fp32 upcast of the non-4-bit
    parameters (the studio's QLoRA path does it only with qlora_upcast; default STUDIO_QLORA_UPCASTS). quant_bytes_per_param:
    bytes per 4-bit weight (default NF4 with double quant, the studio's).
    """
    if device is None:
        from studio.models import detect_device

        device = detect_device()
    if not isinstance(shape, ModelShape):
        shape = ModelShape.for_model(shape if shape is not None else _setting(config, "model", None))
    method = _setting(config, "method", "lora")
    targets = _setting(config, "target_modules", "all-linear")
    r = int(_setting(config, "lora_r", 16))
    batch = int(_setting(config, "batch_size", 1))
    accum = int(_setting(config, "grad_accum", 8))
    seq = int(_setting(config, "max_length", DEFAULT_MAX_LENGTH))
    dropout = float(_setting(config, "lora_dropout", 0.05))
    checkpointing = _setting(config, "gradient_checkpointing", None)
    offload = _setting(config, "offload_checkpoints", None)
    liger = bool(_setting(config, "liger", False))
    fused = bool(_setting(config, "fused_lora", True)) and dropout == 0  # PEFT's own forward runs dropout
    if method not in ("lora", "qlora"):
        raise ValueError(f"method must be lora or qlora, not {method!r}")
    _target_modules(targets)
    for name, value in (("lora_r", r), ("batch_size", batch), ("grad_accum", accum), ("max_length", seq)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    cuda = device.kind == "cuda"
    if qlora_upcast is None:
        qlora_upcast = _setting(config, "qlora_upcast", STUDIO_QLORA_UPCASTS)
    upcast = bool(qlora_upcast)
    quant_bytes = quant_bytes_per_param or NF4_BYTES_PER_PARAM

    def memory_of(checkpointing: bool, offload: bool) -> dict[str, float]:
        return _memory(shape, method, targets, r, batch, seq, dropout, checkpointing, cuda, device.bf16, upcast,
                       quant_bytes, liger, fused, offload and checkpointing and cuda)

    planned = plan_memory(memory_of, method, device) if cuda else (False, False)
    checkpointing = planned[0] if checkpointing is None else bool(checkpointing)
    offload = (planned[1] and checkpointing) if offload is None else bool(offload) and checkpointing and cuda
    memory = memory_of(checkpointing, offload)
    other = memory_of(not checkpointing, offload)
    overhead = CUDA_OVERHEAD_GIB if cuda else CPU_PROCESS_OVERHEAD_GIB
    breakdown = {key: round(value / GIB, 3) for key, value in memory.items()} | {"overhead": overhead}
    peak = sum(memory.values()) / GIB
    total = peak + overhead
    notes: list[str] = []
    if method == "qlora" and not cuda:
        verdict = UNSUPPORTED
        notes.append("QLoRA needs a CUDA GPU (bitsandbytes' 4-bit training kernels); choose LoRA on this machine.")
    elif device.memory_gib <= 0:
        verdict = UNKNOWN
    elif total > device.memory_gib:
        verdict = WILL_NOT_FIT
    elif total > TIGHT_FRACTION * device.memory_gib:
        verdict = TIGHT
    else:
        verdict = FITS

    tokens_micro = batch * seq
    seconds_micro, basis = _micro_step_seconds(shape, method, targets, r, batch, seq, bool(checkpointing),
                                               device, upcast, notes, fused, offload)
    tokens_per_s = tokens_micro / seconds_micro if seconds_micro else None
    if method == "qlora" and upcast and cuda and device.bf16:
        notes.append("QLoRA here upcasts embeddings, lm_head and norms to fp32 (peft.prepare_model_for_kbit_training).")
    notes.append("Tokens per step assume every row fills max_length; shorter rows train faster.")
    return Estimate(
        model=shape.name, method=method, target_modules=targets, lora_r=r, batch_size=batch, grad_accum=accum,
        max_length=seq, gradient_checkpointing=bool(checkpointing), offload_checkpoints=bool(offload),
        device=device.name, device_kind=device.kind,
        device_memory_gib=round(device.memory_gib, 2), params_total=shape.total_params(),
        params_lora=shape.lora_params(r, targets), breakdown_gib=breakdown, peak_allocated_gib=round(peak, 2),
        total_gib=round(total, 2), verdict=verdict,
        other_checkpointing_total_gib=round(sum(other.values()) / GIB + overhead, 2),
        tokens_per_step=tokens_micro * accum,
        tokens_per_s=round(tokens_per_s, 1) if tokens_per_s else None,
        seconds_per_step=round(seconds_micro * accum, 3) if seconds_micro else None,
        time_basis=basis, notes=notes)


def plan_memory(memory_of, method: str, device) -> tuple[bool, bool]:
    """(gradient checkpointing, offload) for `auto`: the fastest measured setting that fits the device.

    Fastest first: no checkpointing (≈ 40 % faster than recomputing, docs/benchmarks.md); checkpointing;
    checkpointing with the saved inputs offloaded to CPU memory. QLoRA offloads whenever it checkpoints,
    since that measured no slower. A setting fits when its total stays under the tight band."""
    overhead = CUDA_OVERHEAD_GIB

    def fits(checkpointing: bool, offload: bool) -> bool:
        total = sum(memory_of(checkpointing, offload).values()) / GIB + overhead
        return device.memory_gib <= 0 or total <= TIGHT_FRACTION * device.memory_gib

    if fits(False, False):
        return False, False
    if method == "lora" and fits(True, False):
        return True, False
    return True, True


def memory_setting_words(checkpointing: bool, offload: bool) -> str:
    """How a run keeps its activations, in the words the Train tab and the run status use."""
    if not checkpointing:
        return "no gradient checkpointing"
    return "gradient checkpointing" + (", saved inputs in CPU memory" if offload else "")


def estimate_config(config, device=None, **options) -> Estimate:
    """estimate() for a TrainConfig (or dict) whose `model` names the base."""
    return estimate(ModelShape.for_model(_setting(config, "model", None)), config, device, **options)


# --------------------------------------------------------------------------------------------------
# Memory


def _memory(shape: ModelShape, method: str, targets: str, r: int, batch: int, seq: int, dropout: float,
            checkpointing: bool, cuda: bool, bf16: bool, upcast: bool, quant_bytes: float,
            liger: bool = False, fused: bool = False, offload: bool = False) -> dict[str, float]:
    """Bytes at the peak of a training step, by kind."""
    autocast = cuda and bf16  # the studio trains in bf16 autocast on such GPUs, in fp32 elsewhere
    act = BF16_BYTES if autocast else FP32_BYTES  # bytes of an activation element
    dense = BF16_BYTES if autocast else FP32_BYTES  # bytes of an unquantized weight
    upcast_here = method == "qlora" and upcast and autocast
    if method == "qlora":
        weights = shape.layer_linear_params() * quant_bytes + shape.other_params() * (
            FP32_BYTES if upcast_here else dense)
    else:
        weights = shape.total_params() * dense
    lora = shape.lora_params(r, targets)
    tokens = batch * seq
    h, i = shape.hidden, shape.intermediate

    # Saved for backward, per token and decoder layer (bytes). RMSNorm keeps its fp32 input (×2 norms);
    # SDPA keeps q, k, v and its output (k/v expanded to all heads when a padding mask is passed, batch > 1);
    # each adapted linear keeps a copy of its input in the autocast dtype (PEFT casts it to fp32, dropout,
    # autocast back) plus the dropout mask, and the rank-r output of lora_A; the SwiGLU keeps gate, up and
    # silu(gate).
    kv = shape.kv_dim if batch == 1 else shape.q_dim
    per_token = 2 * 4 * h + act * (2 * shape.q_dim + 2 * kv)
    # fp32 without dropout: lora_A reuses the saved input; the fused LoRA linear never makes the copy.
    copy = act if (autocast or dropout > 0) and not fused else 0
    mask = 1 if dropout > 0 else 0
    shapes = shape.linear_shapes()
    for module in _target_modules(targets):
        per_token += (copy + mask) * shapes[module][0] + act * r
    per_token += (FP32_BYTES if upcast_here else act) * 3 * i
    layer = tokens * per_token
    final = tokens * 4 * h  # the final norm's fp32 input
    logits = LOGITS_PEAK_BYTES_PER_ELEMENT * tokens * shape.vocab
    if liger:  # fused linear cross-entropy: logits only ever exist one chunk of tokens at a time
        logits = LIGER_CHUNK_BYTES_PER_ELEMENT * min(tokens, max(1, tokens // max(1, -(-shape.vocab // h)))) * shape.vocab
    if upcast_here:  # fp32 lm_head: autocast's bf16 copy of it is saved for the backward
        logits += BF16_BYTES * shape.vocab * h
    if checkpointing:
        residual = FP32_BYTES if upcast_here else act
        saved = shape.layers * tokens * h * residual * (1 - OFFLOAD_SAVED_FRACTION_FREED if offload else 1) + final
        # After the loss, one layer is recomputed at a time: its activations plus a few gradient buffers.
        recompute = layer + 3 * tokens * h * FP32_BYTES
        activations = saved + max(0, recompute - logits)
    else:
        activations = shape.layers * layer + final
    return {"weights": weights, "lora_weights": lora * LORA_BYTES_PER_PARAM["weights"],
            "lora_grads": lora * LORA_BYTES_PER_PARAM["grads"],
            "optimizer_states": lora * LORA_BYTES_PER_PARAM["optimizer"],
            "activations": activations, "logits": logits}


# --------------------------------------------------------------------------------------------------
# Time


def flops_per_token(shape: ModelShape, r: int, targets: str, seq: int, checkpointing: bool) -> float:
    """Executed FLOPs per trained token of a LoRA step on a frozen base.

    Forward 2·P and backward 2·P (input gradients only) for the base matmuls, 6·P for the LoRA matrices
    (they get weight gradients too), attention 4·S·d per layer forward and twice that backward; gradient
    checkpointing runs the decoder layers' forward once more. For the 7B at 4096 tokens without
    recompute this gives ≈ 33.7 GFLOP, the reference "≈ 33 GFLOP of useful work per token".
    """
    lora = shape.lora_params(r, targets)
    attention_forward = 4 * shape.layers * shape.q_dim * seq
    executed = 4 * shape.matmul_params() + 6 * lora + 3 * attention_forward
    if checkpointing:
        executed += 2 * shape.layer_linear_params() + 2 * lora + attention_forward
    return float(executed)


def _micro_step_seconds(shape, method, targets, r, batch, seq, checkpointing, device, upcast, notes, fused=False,
                        offload=False):
    """(seconds per micro-batch, basis) or (None, 'unknown')."""
    tokens = batch * seq
    flops = flops_per_token(shape, r, targets, seq, checkpointing) * tokens
    passes = 3 if checkpointing else 2
    if device.kind != "cuda":
        cores = _cpu_cores(device.name)
        seconds = CPU_STEP_OVERHEAD_S + flops / (CPU_FLOPS_PER_CORE * cores)
        notes.append("CPU time is rough: calibrated on the demo model; other models, CPUs or a busy machine differ.")
        return seconds, "rough"
    spec = gpu_spec(device.name)
    if spec is None:
        notes.append(f"No speed figures for {device.name}: time unknown.")
        return None, "unknown"
    basis = "calibrated"
    if device.bf16 and spec.bf16_tflops:
        tflops = spec.bf16_tflops
    elif spec.fp32_tflops:
        tflops, basis = spec.fp32_tflops, "rough"
        notes.append(f"{device.name} has no bf16: the studio trains in fp32 there (slow; the time is rough).")
    else:
        notes.append(f"No fp32 speed figure for {device.name}: time unknown.")
        return None, "unknown"
    bandwidth = H200_BANDWIDTH_TBS / spec.bandwidth_tbs  # > 1 on slower memory
    side = FUSED_LORA_SIDE_S_PER_UNIT_TOKEN_PASS if fused else LORA_SIDE_S_PER_UNIT_TOKEN_PASS
    seconds = (STEP_OVERHEAD_S[checkpointing] + flops / (MATMUL_EFFICIENCY * tflops * 1e12)
               + side * tokens * shape.lora_units(targets) * passes * bandwidth)
    if fused and not checkpointing:
        seconds += FUSED_NO_CHECKPOINTING_S_PER_TOKEN_LAYER * tokens * shape.layers
    floor = HOST_FLOOR_S_PER_LAYER[checkpointing] * shape.layers
    if offload:
        seconds *= OFFLOAD_SLOWDOWN[method]
    if method == "qlora":
        dequant = FUSED_QLORA_DEQUANT_S_PER_PARAM_PASS if fused else QLORA_DEQUANT_S_PER_PARAM_PASS
        seconds += dequant * shape.layer_linear_params() * passes * bandwidth
        if not fused:  # the floor of bitsandbytes' and PEFT's Python layers; the fused path calls them less
            floor *= QLORA_HOST_FLOOR_FACTOR
        if upcast and device.bf16:  # in fp32 everything is fp32 anyway
            seconds *= QLORA_UPCAST_SLOWDOWN
    return max(seconds, floor), basis


def _cpu_cores(name: str) -> int:
    match = re.search(r"(\d+) cores", name)
    return int(match.group(1)) if match else (os.cpu_count() or 1)
