"""Decoding attention for models with fewer key/value heads than query heads (Qwen2 7B: 28 query, 4 kv heads).

transformers' SDPA path repeats every key/value head for its query heads (`repeat_kv`) whenever a mask is given
— and decoding over a static cache always gives one — except outside `torch.compile`. Under the compiled decode
step that copy is the whole cache, seven times over, every layer, every step: a 128-row batch compare over a
2k-token cache copied about 100 GB a step. Here a decoding step (one query token) runs each key/value head once,
with its query heads as the query positions: the same attention, reading the cache once. Everything else
(prefill, training, models without grouped heads) is transformers' SDPA as before.
"""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "studio_decode"


def decode_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The transformers attention-function contract: (batch, heads, T, D) in, ((batch, T, heads, D), None) out."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    shared_mask = attention_mask is None or attention_mask.shape[1] == 1
    if length != 1 or groups == 1 or dropout or kwargs.get("softcap") is not None or not shared_mask \
            or key.shape[1] * groups != heads:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # (batch, kv heads, its query heads, D): query head h reads kv head h // groups, as repeat_kv would give it
    grouped = query.reshape(batch, heads // groups, groups, dim)
    # Two matrix products and a softmax, not SDPA: its kernels split the work by batch and head only, so a
    # two-row decode over a 5k-token cache ran on 8 of the H200's 132 processors (214 us a layer); the products
    # split along the cache too.
    scores = torch.matmul(grouped, key.transpose(-1, -2)) * (scaling if scaling is not None else dim ** -0.5)
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[2]]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    output = torch.matmul(weights, value)
    return output.reshape(batch, heads, dim).unsqueeze(1), None


def register() -> str:
    """Make `studio_decode` a name transformers models accept as their attention implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
