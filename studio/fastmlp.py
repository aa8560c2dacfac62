"""A fused LoRA MLP for training: down(silu(gate(x)) · up(x)) as one autograd function.

With the fused LoRA linear (studio.fastlora) each projection keeps its own input for the backward, so the
MLP keeps x, the gate and up outputs (for SiLU's backward) and their product h (the input of down). The
product is cheap to recompute from the other two, and it is as large as each of them (tokens × 18,944 on the
7B). Here it is recomputed in the backward, and the gradient of h is then written into h's own memory, so
a layer's MLP holds one tokens × intermediate tensor fewer in both passes. The math is the fused LoRA
linear's, three times; SiLU·mul uses Liger's Triton kernels when they are installed and the tensors are on
a GPU, PyTorch otherwise.

Opt-in (TrainConfig.fused_mlp) until measured on a GPU.
"""

from __future__ import annotations

import types

import torch

from studio.fastlora import _base_weight, _compute_dtype, _servable


def _liger_swiglu():
    try:
        from liger_kernel.ops.swiglu import swiglu_backward, swiglu_forward
    except ImportError:
        return None
    return swiglu_forward, swiglu_backward


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    kernels = _liger_swiglu() if gate.is_cuda else None
    if kernels:
        return kernels[0](gate, up)[2]
    return torch.nn.functional.silu(gate) * up


def silu_mul_backward_(gate: torch.Tensor, up: torch.Tensor, grad: torch.Tensor):
    """Gradients of silu(gate) · up, written into gate's and up's own memory (they are not needed after)."""
    kernels = _liger_swiglu() if gate.is_cuda else None
    if kernels:
        return kernels[1](gate, up, grad)
    sigmoid = torch.sigmoid(gate.float())
    silu = gate.float() * sigmoid
    grad_up = grad.float() * silu
    grad_gate = grad.float() * up.float() * (sigmoid + silu * (1 - sigmoid))
    gate.copy_(grad_gate)
    up.copy_(grad_up)
    return gate, up


def _lora_out(flat, layer, a, b, scaling, dtype):
    """flat Wᵀ + bias + scaling · (flat Aᵀ) Bᵀ, and the thin flat Aᵀ kept for B's gradient."""
    x_a = flat @ a.t()
    bias = None if layer.bias is None else layer.bias.to(dtype)
    out = torch.nn.functional.linear(flat, _base_weight(layer, dtype), bias)
    out.addmm_(x_a, b.t(), alpha=scaling)
    return out, x_a


class FusedLoraMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layers, scalings, gate_a, gate_b, up_a, up_b, down_a, down_b):
        dtype = _compute_dtype(x)
        weights = (gate_a, gate_b, up_a, up_b, down_a, down_b)
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(dtype)
            ga, gb, ua, ub, da, db = (w.to(dtype) for w in weights)
            gate, gate_x_a = _lora_out(flat, layers[0], ga, gb, scalings[0], dtype)
            up, up_x_a = _lora_out(flat, layers[1], ua, ub, scalings[1], dtype)
            product = silu_mul(gate, up)
            out, down_x_a = _lora_out(product, layers[2], da, db, scalings[2], dtype)
        del product  # recomputed in the backward: the point of this function
        ctx.save_for_backward(flat, gate, up, gate_x_a, up_x_a, down_x_a, *weights)
        ctx.layers, ctx.scalings, ctx.dtype, ctx.x_shape, ctx.x_dtype = layers, scalings, dtype, x.shape, x.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        flat, gate, up, gate_x_a, up_x_a, down_x_a, *weights = ctx.saved_tensors
        dtype, (s_gate, s_up, s_down) = ctx.dtype, ctx.scalings
        gate_layer, up_layer, down_layer = ctx.layers
        with torch.autocast(grad_out.device.type, enabled=False):
            ga, gb, ua, ub, da, db = (w.to(dtype) for w in weights)
            grad = grad_out.reshape(-1, grad_out.shape[-1]).to(dtype)
            product = silu_mul(gate, up)
            grad_down_b_side = grad @ db
            grad_down_a = (grad_down_b_side.t() @ product).mul_(s_down)
            grad_down_b = (grad.t() @ down_x_a).mul_(s_down)
            grad_product = torch.matmul(grad, _base_weight(down_layer, dtype), out=product)  # product's memory
            grad_product.addmm_(grad_down_b_side, da, alpha=s_down)
            grad_gate, grad_up = silu_mul_backward_(gate, up, grad_product)  # into gate's and up's memory
            del grad_product, product
            gate_b_side, up_b_side = grad_gate @ gb, grad_up @ ub
            grad_gate_a = (gate_b_side.t() @ flat).mul_(s_gate)
            grad_gate_b = (grad_gate.t() @ gate_x_a).mul_(s_gate)
            grad_up_a = (up_b_side.t() @ flat).mul_(s_up)
            grad_up_b = (grad_up.t() @ up_x_a).mul_(s_up)
            grad_x = grad_gate @ _base_weight(gate_layer, dtype)
            grad_x.addmm_(gate_b_side, ga, alpha=s_gate)
            grad_x.addmm_(grad_up, _base_weight(up_layer, dtype))
            grad_x.addmm_(up_b_side, ua, alpha=s_up)
        grads = (grad_gate_a, grad_gate_b, grad_up_a, grad_up_b, grad_down_a, grad_down_b)
        return (grad_x.view(ctx.x_shape).to(ctx.x_dtype), None, None,
                *(g.to(w.dtype) for g, w in zip(grads, weights)))


def _is_silu(activation) -> bool:
    return isinstance(activation, torch.nn.SiLU) or type(activation).__name__ in ("SiLUActivation", "SiLU")


def _fused_mlp_forward(mlp, x, *args, **kwargs):
    projections = (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    names = [_servable(layer, (), {}) for layer in projections]
    if args or kwargs or None in names or len(set(names)) != 1 or not _is_silu(mlp.act_fn):
        return mlp._unfused_forward(x, *args, **kwargs)
    name = names[0]
    weights = [w for layer in projections for w in (layer.lora_A[name].weight, layer.lora_B[name].weight)]
    return FusedLoraMLP.apply(x, tuple(layer.base_layer for layer in projections),
                              tuple(layer.scaling[name] for layer in projections), *weights)


def enable_fused_mlp(model) -> int:
    """Route every SiLU-gated MLP whose three projections are LoRA layers through FusedLoraMLP. Call it after
    anything else that replaces the MLP's forward (Liger does, when the Trainer starts): that forward stays as
    the fallback. Returns how many MLPs it took."""
    from peft.tuners.lora.layer import LoraLayer

    count = 0
    for module in model.modules():
        projections = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
        if (all(isinstance(layer, LoraLayer) for layer in projections) and hasattr(module, "act_fn")
                and not hasattr(module, "_unfused_forward")):
            module._unfused_forward = module.forward
            module.forward = types.MethodType(_fused_mlp_forward, module)
            count += 1
    return count
