"""A fused LoRA linear for training: one autograd function instead of PEFT's chain of small ops.

PEFT's LoRA forward is written for every case (any dtype, dropout, variants, mixed adapters): it runs the
base layer, casts the input to the adapter's fp32 dtype, runs lora_A, lora_B, a scaling multiply and an add,
each a separate op that reads and writes the whole activation, and autograd then keeps a second bf16 copy of
the input for lora_A. On a 7B model at 4096 tokens those passes over 4096×18944 tensors cost more than the
LoRA matmuls themselves. This module computes the same thing as

    y = x Wᵀ + b + s · (x Aᵀ) Bᵀ

with two fused matmul-adds forward and backward, keeps only the input and the thin x Aᵀ for backward, and
dequantizes 4-bit (NF4) weights on the fly as bitsandbytes does. PEFT keeps owning the parameters, saving and
loading; only the forward of the layers it can serve exactly (one active adapter, no dropout, no DoRA or other
variant, not merged) is replaced, everything else falls back to PEFT's own forward.
"""

from __future__ import annotations

import types

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give a matmul here (bf16 in a GPU run), else the input's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """tensor in dtype; skips the call when it already is (`.to` costs host time even as a no-op)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _base_weight(base_layer, dtype: torch.dtype) -> torch.Tensor:
    """The frozen weight in the compute dtype; a 4-bit weight is dequantized (freed after use)."""
    weight = base_layer.weight
    if type(weight) is torch.nn.Parameter:  # the common case, without the slower failing attribute lookup below
        return _as(weight, dtype)
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is not None:
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, quant_state).to(dtype)
    return weight.to(dtype)


class FusedLoraLinear(torch.autograd.Function):
    """y = x Wᵀ + bias + scaling · (x Aᵀ) Bᵀ; gradients for x, A and B (W and bias are frozen)."""

    # Every operand is cast to the compute dtype first, so autocast, if on, has nothing left to cast: no context
    # to switch it off (entering one costs microseconds of host time per call, and a 7B step makes ~1,200 calls).
    @staticmethod
    def forward(ctx, x, base_layer, lora_a, lora_b, scaling):
        dtype = _compute_dtype(x)
        flat = _as(x.reshape(-1, x.shape[-1]), dtype)
        a, b = _as(lora_a, dtype), _as(lora_b, dtype)
        bias = None if base_layer.bias is None else _as(base_layer.bias, dtype)
        x_a = flat @ a.t()
        out = torch.nn.functional.linear(flat, _base_weight(base_layer, dtype), bias)
        out.addmm_(x_a, b.t(), alpha=scaling)
        ctx.save_for_backward(flat, x_a, lora_a, lora_b)
        ctx.base_layer, ctx.scaling, ctx.dtype, ctx.x_shape, ctx.x_dtype = base_layer, scaling, dtype, x.shape, x.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        flat, x_a, lora_a, lora_b = ctx.saved_tensors
        dtype, scaling = ctx.dtype, ctx.scaling
        grad = _as(grad_out.reshape(-1, grad_out.shape[-1]), dtype)
        a, b = _as(lora_a, dtype), _as(lora_b, dtype)
        grad_b_side = grad @ b  # (tokens, r)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ _base_weight(ctx.base_layer, dtype)
            grad_x.addmm_(grad_b_side, a, alpha=scaling)
            grad_x = _as(grad_x.view(ctx.x_shape), ctx.x_dtype)
        if ctx.needs_input_grad[2]:
            grad_a = _as((grad_b_side.t() @ flat).mul_(scaling), lora_a.dtype)
        if ctx.needs_input_grad[3]:
            grad_b = _as((grad.t() @ x_a).mul_(scaling), lora_b.dtype)
        return grad_x, None, grad_a, grad_b, None


def _servable(layer) -> str | None:
    """The one active adapter this layer can run fused, or None to use PEFT's forward."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    dropout = layer.lora_dropout[name]
    if name in getattr(layer, "lora_variant", {}) or (layer.training and getattr(dropout, "p", 0) > 0):
        return None
    if not isinstance(layer.lora_A[name], torch.nn.Linear) or layer.lora_A[name].bias is not None:
        return None
    return name


def _route(layer) -> str | None:
    """_servable, remembered per layer until its training mode or adapter state changes (the full check costs
    more host time than the rest of the call)."""
    active = layer.active_adapter
    key = (layer.training, layer.disable_adapters, len(layer.merged_adapters),
           active if isinstance(active, str) else tuple(active))
    remembered = layer.__dict__.get("_studio_route")
    if remembered is None or remembered[0] != key:
        remembered = layer.__dict__["_studio_route"] = (key, _servable(layer))
    return remembered[1]


def _fused_forward(layer, x, *args, **kwargs):
    name = None if args or kwargs else _route(layer)
    if name is None:
        return layer._peft_forward(x, *args, **kwargs)
    return FusedLoraLinear.apply(x, layer.base_layer, layer.lora_A[name].weight, layer.lora_B[name].weight,
                                 layer.scaling[name])


def enable_fused_lora(model) -> int:
    """Route every plain or 4-bit LoRA linear of `model` through FusedLoraLinear; returns how many."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    kinds = [LoraLinear]
    try:
        from peft.tuners.lora.bnb import Linear4bit as Lora4bit

        kinds.append(Lora4bit)
    except (ImportError, AttributeError):  # bitsandbytes not installed: no 4-bit layers to serve
        pass
    count = 0
    for module in model.modules():
        if type(module) in kinds and not hasattr(module, "_peft_forward"):
            module._peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def disable_fused_lora(model) -> int:
    """Give every layer back PEFT's own forward (for generation, merging or saving with PEFT's code)."""
    count = 0
    for module in model.modules():
        if hasattr(module, "_peft_forward"):
            module.forward = module._peft_forward
            del module._peft_forward
            count += 1
    return count
