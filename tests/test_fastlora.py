"""The fused LoRA linear computes what PEFT computes: same outputs and gradients, plain and 4-bit."""

import pytest
import torch

from studio.train.fastlora import disable_fused_lora, enable_fused_lora


def lora_model(dropout=0.0, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo"), attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    with torch.no_grad():  # B starts at zero in PEFT; give it values so the LoRA path matters
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    model.train()
    return model


def loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 500, (2, 48), generator=torch.Generator().manual_seed(1))


def test_fused_lora_matches_peft_loss_and_every_gradient(ids):
    model = lora_model()
    reference_loss, reference = loss_and_grads(model, ids)
    assert enable_fused_lora(model) == 7 * model.config.num_hidden_layers
    fused_loss, fused = loss_and_grads(model, ids)
    assert fused_loss == pytest.approx(reference_loss, rel=1e-6)
    assert fused.keys() == reference.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert disable_fused_lora(model) == 7 * model.config.num_hidden_layers
    assert loss_and_grads(model, ids)[0] == pytest.approx(reference_loss, rel=1e-6)


def assert_bf16_fused_matches(model, ids, enable, device_type="cpu"):
    """Under bf16 autocast, `enable(model)` leaves the loss and every gradient within bf16 rounding."""
    with torch.autocast(device_type, dtype=torch.bfloat16):
        reference_loss, reference = loss_and_grads(model, ids)
        enable(model)
        fused_loss, fused = loss_and_grads(model, ids)
    assert fused_loss == pytest.approx(reference_loss, rel=2e-3)
    for name, grad in reference.items():
        assert fused[name].dtype == torch.float32  # the fp32 adapter keeps fp32 gradients for the optimizer
        cosine = torch.nn.functional.cosine_similarity(fused[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.99, name


def test_fused_lora_under_bf16_autocast_stays_within_bf16_rounding(ids):
    assert_bf16_fused_matches(lora_model(), ids, enable_fused_lora)


def test_layers_it_cannot_serve_fall_back_to_peft(ids, monkeypatch):
    from studio.train import fastlora

    served = []
    apply = fastlora.FusedLoraLinear.apply
    monkeypatch.setattr(fastlora.FusedLoraLinear, "apply", lambda *args: served.append(1) or apply(*args))
    model = lora_model(dropout=0.1)  # dropout in training: PEFT's own forward (it owns the mask)
    enable_fused_lora(model)
    torch.manual_seed(3)
    fused_loss, _ = loss_and_grads(model, ids)
    assert served == []
    disable_fused_lora(model)
    torch.manual_seed(3)
    assert loss_and_grads(model, ids)[0] == fused_loss
    model.eval()  # in eval mode dropout is off, so the fused path serves it again
    enable_fused_lora(model)
    with torch.no_grad():
        fused_eval = model(input_ids=ids, labels=ids).loss.item()
        assert served
        served.clear()
        with model.disable_adapter():  # adapters off: the base layer alone, through PEFT
            base = model(input_ids=ids, labels=ids).loss.item()
        assert served == []
    disable_fused_lora(model)
    with torch.no_grad():
        assert model(input_ids=ids, labels=ids).loss.item() == pytest.approx(fused_eval, rel=1e-6)
    assert base != pytest.approx(fused_eval, rel=1e-6)


def test_the_remembered_route_follows_adapter_switches(ids):
    model = lora_model().eval()
    enable_fused_lora(model)
    with torch.no_grad():
        with_lora = model(input_ids=ids, labels=ids).loss.item()  # the route is remembered from here on
        with model.disable_adapter():
            without = model(input_ids=ids, labels=ids).loss.item()
        again = model(input_ids=ids, labels=ids).loss.item()
        disable_fused_lora(model)
        with model.disable_adapter():
            assert without == pytest.approx(model(input_ids=ids, labels=ids).loss.item(), rel=1e-6)
    assert again == with_lora and without != pytest.approx(with_lora, rel=1e-6)


def test_fused_lora_on_a_4bit_layer_matches_peft():
    bnb = pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(bnb.nn.Linear4bit(64, 96, bias=True, compute_dtype=torch.float32, quant_type="nf4"))
    net = net.to("cpu")  # quantizes the weight to NF4
    net = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["0"], lora_dropout=0.0))
    with torch.no_grad():
        net.base_model.model[0].lora_B["default"].weight.normal_(0, 0.1)
    x = torch.randn(5, 64, requires_grad=True)

    def run():
        x.grad = None
        net.zero_grad(set_to_none=True)
        out = net(x)
        (out * torch.linspace(-1, 1, 96)).sum().backward()
        lora = net.base_model.model[0]
        return out.detach(), x.grad.clone(), lora.lora_A["default"].weight.grad.clone()

    reference = run()
    assert enable_fused_lora(net) == 1
    fused = run()
    for want, got in zip(reference, fused):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
