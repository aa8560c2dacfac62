"""The GPU-only parts of the fast engine on the demo model: skipped without CUDA (run them on a GPU machine)."""

import pytest
import torch

from tests.test_fastlora import assert_bf16_fused_matches, loss_and_grads, lora_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 500, (2, 256), generator=torch.Generator().manual_seed(1)).cuda()


def checkpointed_model(offload: bool):
    from studio.train.offload import enable_async_offload

    model = lora_model().cuda()
    base = model.get_base_model()
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    base.enable_input_require_grads()
    if offload:
        assert enable_async_offload(base)
    model.train()
    return model


def test_async_offload_gives_the_same_loss_and_gradients(ids, monkeypatch):
    import studio.train.offload

    monkeypatch.setattr(studio.train.offload, "MIN_BYTES", 1)  # the demo's activations are small: offload them all
    results = {}
    for offload in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            results[offload] = loss_and_grads(checkpointed_model(offload), ids)
    assert results[True][0] == results[False][0]
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=0, atol=0, msg=name)


def test_fused_lora_on_cuda_bf16_matches_peft(ids):
    from studio.train.fastlora import enable_fused_lora

    assert_bf16_fused_matches(lora_model().cuda(), ids, enable_fused_lora, "cuda")


def test_studio_bench_on_the_gpu_reports_memory_and_the_ceiling(tmp_path):
    from studio.train.bench import run_bench

    result = run_bench(model="demo", steps=3, seq=256, liger=False, out_dir=str(tmp_path))
    assert result.peak_gib and result.peak_gib > 0
    assert result.tokens_per_s > 0

