"""Variable-length (varlen) attention for packed batches, as a transformers attention implementation.

A packed batch is one row holding several sequences. Through SDPA, transformers turns the restarting
position ids into a block-diagonal mask; flash attention cannot take a mask, so another kernel computes
attention over the whole pack and masks most of it away: on the H200, 36 % of the GPU's kernel time for the
7B on rows of mixed length (docs/benchmarks.md). PyTorch's `varlen_attn` (flash attention with cumulative
sequence offsets) computes each sequence's causal attention alone. transformers' own route to it needs the
flash-attn package (a CUDA build); this one needs only PyTorch.

`studio_varlen` reads the offsets that `DataCollatorWithFlattening(return_flash_attn_kwargs=True)` puts in
the batch; a training batch without a mask (rows of one length) is one sequence per row; everything else
(padded batches, generation, CPU) is plain SDPA with its usual mask.
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "studio_varlen"


@functools.cache
def _varlen_call():
    """(varlen_attn, how to ask it for causal attention, whether it takes fewer kv heads, whether it scales),
    or None when this PyTorch has no varlen attention. Its signature changed between releases."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    if "is_causal" in parameters:
        causal = {"is_causal": True}
    elif "window_size" in parameters:
        causal = {"window_size": (-1, 0)}
    else:
        return None
    return varlen_attn, causal, "enable_gqa" in parameters, "scale" in parameters


@functools.cache
def flash_capable(device_index: int | None) -> bool:
    """PyTorch's flash kernel needs compute capability 8.0 (Ampere) or newer; older GPUs stay with SDPA."""
    return torch.cuda.get_device_capability(device_index)[0] >= 8


def kernel_available(query) -> bool:
    return query.is_cuda and _varlen_call() is not None and flash_capable(query.device.index)


def kernel_dtype(query) -> torch.dtype | None:
    """The half-precision dtype the flash kernel runs in: the input's own, or autocast's for fp32 inputs (as SDPA
    would under autocast); None when neither is half precision."""
    if query.dtype in (torch.float16, torch.bfloat16):
        return query.dtype
    if torch.is_autocast_enabled(query.device.type):
        dtype = torch.get_autocast_dtype(query.device.type)
        return dtype if dtype in (torch.float16, torch.bfloat16) else None
    return None


def packed_attention(query, key, value, cu_seq_lens, max_length, scaling):
    """Causal attention of each sequence of a pack: q (T, Hq, D), k and v (T, Hkv, D) -> (T, Hq, D)."""
    varlen_attn, causal, takes_gqa, takes_scale = _varlen_call()
    options = dict(causal)
    if takes_gqa:
        options["enable_gqa"] = True
    elif key.shape[1] != query.shape[1]:
        repeat = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    if takes_scale:
        options["scale"] = scaling
    elif scaling is not None and abs(scaling - query.shape[-1] ** -0.5) > 1e-6:
        raise ValueError("this PyTorch's varlen attention has no scale argument; the model needs one")
    return varlen_attn(query, key, value, cu_seq_lens, cu_seq_lens, max_length, max_length, **options)


def sequence_offsets(module, query, key, attention_mask, **kwargs) -> tuple[torch.Tensor, int] | None:
    """(cumulative sequence offsets, longest sequence) of a batch the kernel can take, else None.

    A packed row brings its offsets from the collator. A batch without a mask whose queries are its keys (training:
    rows of one length, no padding, no cache) is causal attention over each row, so each row is one sequence —
    the kernel then also serves unpacked training, where SDPA's own choice (cuDNN on an H200) spent milliseconds
    of CPU per call on every new length. Anything else (padding masks, generation with a cache, sliding windows,
    soft-capping) is left to SDPA."""
    if getattr(module, "sliding_window", None) or kwargs.get("softcap") or not getattr(module, "is_causal", True):
        return None
    batch, _, length, _ = query.shape
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if cu_seq_lens is not None:
        if batch != 1:
            return None
        longest = kwargs.get("max_length_q") or int((cu_seq_lens[1:] - cu_seq_lens[:-1]).max())
        return cu_seq_lens.to(torch.int32), int(longest)
    if attention_mask is None and key.shape[2] == length:
        return torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=query.device), length
    return None


def varlen_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The transformers attention-function contract: (batch, heads, T, D) in, ((batch, T, heads, D), None) out."""
    dtype = kernel_dtype(query)
    offsets = None
    if dropout == 0.0 and dtype is not None and kernel_available(query):
        offsets = sequence_offsets(module, query, key, attention_mask, **kwargs)
    if offsets is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, length, head_dim = query.shape

    def tokens_first(tensor):  # (batch, heads, T, D) -> (batch · T, heads, D), in the kernel's dtype
        return tensor.transpose(1, 2).reshape(batch * length, tensor.shape[1], head_dim).to(dtype)

    output = packed_attention(tokens_first(query), tokens_first(key), tokens_first(value), *offsets, scaling)
    return output.view(batch, length, heads, head_dim), None


def register() -> str:
    """Make `studio_varlen` a name transformers models accept as their attention implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the mask the SDPA fallback needs
    return NAME
