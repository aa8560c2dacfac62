"""A Llama-architecture base (like R1-Distill-Llama-8B) trains through the same path as the Qwen2 demo."""

import pytest

from studio.config import SAMPLES_DIR
from studio.runs import COMPLETED
from studio.train.job import TrainingJob, default_config


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, demo_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(demo_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=demo_tokenizer.bos_token_id, eos_token_id=demo_tokenizer.eos_token_id,
                         pad_token_id=demo_tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    demo_tokenizer.save_pretrained(folder)
    return folder


def test_llama_architecture_trains_end_to_end(tiny_llama, tmp_path):
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(tmp_path / "llama-run"), model=str(tiny_llama),
                            max_steps=4, batch_size=4, learning_rate=5e-3, max_length=256)
    job = TrainingJob(config)
    status = job.run()
    assert status["state"] == COMPLETED, status
    losses = [row["loss"] for row in job.metrics()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    adapter_config = (job.folder.adapter_dir / "adapter_config.json").read_text()
    assert "LlamaForCausalLM" in adapter_config or "q_proj" in adapter_config
