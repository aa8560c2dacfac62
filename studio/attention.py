"""Variable-length (varlen) attention for packed batches, as a transformers attention implementation.

A packed batch is one row holding several sequences. Through SDPA, transformers turns the restarting
position ids into a block-diagonal mask; flash attention cannot take a mask, so another kernel computes
attention over the whole pack and masks most of it away: on the H200, 36 % of the GPU's kernel time for the
7B on rows of mixed length (docs/benchmarks.md). PyTorch's `varlen_attn` (flash attention with cumulative
sequence offsets) computes each sequence's causal attention alone. transformers' own route to it needs the
flash-attn package (a CUDA build); this one needs only PyTorch.

`studio_varlen` reads the offsets that `DataCollatorWithFlattening(return_flash_attn_kwargs=True)` puts in
the batch; without them (unpacked batches, evaluation, CPU) it is plain SDPA with its usual mask.
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


def kernel_available(query) -> bool:
    return query.is_cuda and _varlen_call() is not None


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


def varlen_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The transformers attention-function contract: (batch, heads, T, D) in, ((batch, T, heads, D), None) out."""
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    # Training packs queries and keys alike (no cache), so the key offsets are the query offsets.
    usable = cu_seq_lens is not None and query.shape[0] == 1 and dropout == 0.0 and kernel_available(query)
    if not usable:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    max_length = int(kwargs.get("max_length_q") or int((cu_seq_lens[1:] - cu_seq_lens[:-1]).max()))
    output = packed_attention(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
                              cu_seq_lens.to(torch.int32), max_length, scaling)
    return output.unsqueeze(0), None


def register() -> str:
    """Make `studio_varlen` a name transformers models accept as their attention implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the mask the SDPA fallback needs
    return NAME
