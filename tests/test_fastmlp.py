"""The fused LoRA MLP computes what the model's MLP with PEFT's LoRA computes: outputs and every gradient."""

import pytest
import torch

from studio.fastlora import enable_fused_lora
from studio.fastmlp import enable_fused_mlp, silu_mul, silu_mul_backward_
from tests.test_fastlora import assert_bf16_fused_matches, ids, loss_and_grads, lora_model  # noqa: F401 (ids: fixture)


def test_fused_mlp_matches_the_model_loss_and_every_gradient(ids):
    model = lora_model()
    reference_loss, reference = loss_and_grads(model, ids)
    assert enable_fused_mlp(model) == model.config.num_hidden_layers
    enable_fused_lora(model)  # the attention projections: fused linear
    fused_loss, fused = loss_and_grads(model, ids)
    assert fused_loss == pytest.approx(reference_loss, rel=1e-6)
    for name, grad in reference.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_mlp_under_bf16_autocast(ids):
    assert_bf16_fused_matches(lora_model(), ids, enable_fused_mlp)


def test_an_mlp_it_cannot_serve_runs_its_own_forward(ids):
    model = lora_model(dropout=0.1)  # dropout in training: the MLP's own forward, PEFT's layers
    enable_fused_mlp(model)
    torch.manual_seed(3)
    fused_loss, _ = loss_and_grads(model, ids)
    for module in model.modules():
        if hasattr(module, "_unfused_forward"):
            module.forward = module._unfused_forward
    torch.manual_seed(3)
    assert loss_and_grads(model, ids)[0] == fused_loss


def test_silu_mul_backward_in_place_matches_autograd():
    gate, up = torch.randn(5, 7, requires_grad=True), torch.randn(5, 7, requires_grad=True)
    grad = torch.randn(5, 7)
    (torch.nn.functional.silu(gate) * up).backward(grad)
    a, b = gate.detach().clone(), up.detach().clone()
    torch.testing.assert_close(silu_mul(a, b), torch.nn.functional.silu(gate) * up)
    grad_gate, grad_up = silu_mul_backward_(a, b, grad)
    assert grad_gate.data_ptr() == a.data_ptr() and grad_up.data_ptr() == b.data_ptr()  # no new memory
    torch.testing.assert_close(grad_gate, gate.grad)
    torch.testing.assert_close(grad_up, up.grad)


def test_fused_mlp_under_activation_checkpointing(ids):
    """The backward overwrites the saved gate and up outputs; under checkpointing they are recomputed ones."""
    model = lora_model()
    base = model.get_base_model()
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    base.enable_input_require_grads()
    model.train()
    reference_loss, reference = loss_and_grads(model, ids)
    enable_fused_mlp(model)
    fused_loss, fused = loss_and_grads(model, ids)
    assert fused_loss == pytest.approx(reference_loss, rel=1e-6)
    for name, grad in reference.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_training_run_with_the_fused_mlp(tmp_path, monkeypatch):
    from studio import fastmlp
    from studio.config import SAMPLES_DIR
    from studio.runs import COMPLETED
    from studio.training import TrainingJob, default_config

    served = []
    original = fastmlp.FusedLoraMLP.apply
    monkeypatch.setattr(fastmlp.FusedLoraMLP, "apply", lambda *args: served.append(1) or original(*args))
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(tmp_path / "run"), max_steps=3, fused_mlp=True)
    job = TrainingJob(config)
    assert job.run()["state"] == COMPLETED
    assert len(served) >= 3 * 4  # every layer's MLP, every step
    assert job.metrics()[-1]["loss"] < job.metrics()[0]["loss"]
