"""Varlen attention for packed batches: the plumbing on CPU (with a reference kernel), the kernel on a GPU."""

import pytest
import torch

from studio import attention
from studio.config import SAMPLES_DIR
from studio.train.job import default_config, make_collator, prepare_data


def per_sequence_attention(query, key, value, cu_seq_lens, max_length, scaling):
    """What varlen attention computes, one sequence at a time with SDPA: the reference."""
    outputs = []
    for start, end in zip(cu_seq_lens[:-1].tolist(), cu_seq_lens[1:].tolist()):
        q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs)


@pytest.fixture(scope="module")
def rows(demo_tokenizer):
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), "unused", max_length=256)
    return prepare_data(config, demo_tokenizer).train[:5]


def lora_model(implementation, device="cpu"):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.train.fastlora import enable_fused_lora
    from studio.models import resolve_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo"), attn_implementation=implementation)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    enable_fused_lora(model)
    return model.to(device).train()


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    return loss.item(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def packed(demo_tokenizer, rows, device="cpu"):
    batch = make_collator(demo_tokenizer, packing=True, sequence_offsets=True)([dict(row) for row in rows])
    assert batch["cu_seq_lens_q"].numel() == len(rows) + 1
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


@pytest.fixture
def kernel_calls(monkeypatch):
    """On CPU, the reference stands in for the kernel (in the input's dtype); the offsets of each call are kept."""
    calls = []

    def reference(*args):
        calls.append(args[3].tolist())
        return per_sequence_attention(*args)

    monkeypatch.setattr(attention, "kernel_available", lambda query: True)
    monkeypatch.setattr(attention, "kernel_dtype", lambda query: query.dtype)
    monkeypatch.setattr(attention, "packed_attention", reference)
    return calls


def test_packed_batches_go_through_varlen_with_the_masked_loss_and_gradients(demo_tokenizer, rows, kernel_calls):
    calls = kernel_calls
    batch = packed(demo_tokenizer, rows)
    want_loss, want = loss_and_grads(lora_model("sdpa"), batch)  # SDPA: the block-diagonal mask
    got_loss, got = loss_and_grads(lora_model(attention.register()), batch)
    assert len(calls) >= 4 and calls[0] == batch["cu_seq_lens_q"].tolist()  # one call per layer at least
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def equal_length_rows(rows, count):
    length = min(len(row["input_ids"]) for row in rows[:count])
    return {key: torch.tensor([row[key][:length] for row in rows[:count]]) for key in ("input_ids", "labels")}


@pytest.mark.parametrize("count", [1, 2])
def test_batches_without_a_mask_are_one_sequence_per_row(rows, kernel_calls, count):
    batch = equal_length_rows(rows, count)  # what the one-row collator gives: no attention mask
    length = batch["input_ids"].shape[1]
    want_loss, want = loss_and_grads(lora_model("sdpa"), batch)
    got_loss, got = loss_and_grads(lora_model(attention.register()), batch)
    assert kernel_calls and all(call == list(range(0, (count + 1) * length, length)) for call in kernel_calls)
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batches_and_generation_stay_with_sdpa(demo_tokenizer, rows, kernel_calls):
    from studio.models import load_tokenizer

    batch = make_collator(demo_tokenizer, packing=False)([dict(row) for row in rows[:3]])
    assert not bool(batch["attention_mask"].all())  # rows of different lengths: padding, so a mask
    loss_and_grads(lora_model(attention.register()), batch)
    assert kernel_calls == []
    prompt = load_tokenizer("demo")("2 + 2 =", return_tensors="pt")
    want = lora_model("sdpa").eval().generate(**prompt, max_new_tokens=4, do_sample=False)
    model = lora_model(attention.register()).eval()
    got = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert got.tolist() == want.tolist()
    assert len(kernel_calls) <= model.config.num_hidden_layers  # the prompt at most; every new token with SDPA


def test_gpus_older_than_ampere_stay_with_sdpa(monkeypatch):
    capabilities = {0: (7, 5), 1: (8, 0), 2: (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capabilities[index])
    attention.flash_capable.cache_clear()
    try:
        assert [attention.flash_capable(index) for index in (0, 1, 2)] == [False, True, True]
    finally:
        attention.flash_capable.cache_clear()


def test_the_kernel_runs_in_half_precision_only():
    assert attention.kernel_dtype(torch.zeros(1, dtype=torch.bfloat16)) == torch.bfloat16
    assert attention.kernel_dtype(torch.zeros(1)) is None  # fp32 outside autocast: SDPA
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention.kernel_dtype(torch.zeros(1)) == torch.bfloat16


def test_on_cpu_it_is_plain_sdpa(demo_tokenizer, rows):
    batch = packed(demo_tokenizer, rows)
    want_loss, _ = loss_and_grads(lora_model("sdpa"), batch)
    got_loss, _ = loss_and_grads(lora_model(attention.register()), batch)  # CPU: the SDPA fallback
    assert got_loss == pytest.approx(want_loss, rel=1e-6)
    assert not attention.kernel_available(batch["input_ids"].float())  # a CPU tensor: no flash kernel


def test_a_packed_row_without_offsets_stays_with_sdpa_and_its_mask(demo_tokenizer, rows, kernel_calls):
    batch = make_collator(demo_tokenizer, packing=True)([dict(row) for row in rows])  # no cu_seq_lens
    assert "cu_seq_lens_q" not in batch
    want_loss, _ = loss_and_grads(lora_model("sdpa"), batch)
    got_loss, _ = loss_and_grads(lora_model(attention.register()), batch)
    assert kernel_calls == []  # the kernel never sees a pack whose sequences it cannot tell apart
    assert got_loss == pytest.approx(want_loss, rel=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["packed", "one row", "two rows"])
def test_the_varlen_kernel_matches_sdpa_on_a_gpu(demo_tokenizer, rows, monkeypatch, layout):
    calls = []
    kernel = attention.packed_attention
    monkeypatch.setattr(attention, "packed_attention", lambda *args: calls.append(1) or kernel(*args))
    if layout == "packed":
        batch = packed(demo_tokenizer, rows, device="cuda")
    else:
        batch = {key: value.cuda() for key, value in equal_length_rows(rows, 1 if layout == "one row" else 2).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want_loss, want = loss_and_grads(lora_model("sdpa", "cuda"), batch)
        got_loss, got = loss_and_grads(lora_model(attention.register(), "cuda"), batch)
    assert calls  # the kernel ran, not the SDPA fallback
    assert got_loss == pytest.approx(want_loss, rel=1e-2)
    for name, grad in want.items():
        cosine = torch.nn.functional.cosine_similarity(got[name].flatten().float(), grad.flatten().float(), dim=0)
        assert cosine > 0.99, name
