"""The fast path's correctness guard: packed (padding-free) batches give the same loss as padded ones."""

import json

import pytest
import torch

from studio.config import SAMPLES_DIR
from studio.runs import COMPLETED
from studio.train.job import TrainingJob, default_config, make_collator, prepare_data


@pytest.fixture(scope="module")
def batch(demo_tokenizer):
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), "unused", max_length=256)
    return prepare_data(config, demo_tokenizer).train[:6]


def loss_of(model, collated):
    with torch.no_grad():
        return model(**collated, use_cache=False).loss.item()  # no cache: packed boundaries come from position_ids


def test_packed_loss_equals_padded_loss(demo_tokenizer, batch):
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo"), attn_implementation="sdpa")
    padded = make_collator(demo_tokenizer, packing=False)([dict(row) for row in batch])
    packed = make_collator(demo_tokenizer, packing=True)([dict(row) for row in batch])
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert packed["input_ids"].shape[1] == sum(len(row["input_ids"]) for row in batch)  # no padding
    assert padded["input_ids"].numel() > packed["input_ids"].numel()
    assert loss_of(model, packed) == pytest.approx(loss_of(model, padded), rel=1e-4)


def test_one_row_batches_drop_the_all_ones_mask_with_the_same_loss(demo_tokenizer, batch):
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo"), attn_implementation="sdpa")
    row = [dict(batch[0])]
    one = make_collator(demo_tokenizer, packing=False, one_row=True)([dict(r) for r in row])
    masked = make_collator(demo_tokenizer, packing=False)([dict(r) for r in row])
    assert "attention_mask" not in one and masked["attention_mask"].all()
    assert loss_of(model, one) == loss_of(model, masked)
    two = make_collator(demo_tokenizer, packing=False)([dict(r) for r in batch[:2]])
    assert "attention_mask" in two  # rows of different lengths: padded, so the mask stays


def test_training_with_packing(tmp_path):
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(tmp_path / "packed"), max_steps=4,
                            batch_size=8, packing=True)
    job = TrainingJob(config)
    assert job.run()["state"] == COMPLETED
    rows = job.metrics()
    assert len(rows) == 4 and rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["tokens_seen"] > 0


def test_engine_comparison_guard_flags_a_loss_gap():
    from studio.benchmarks.compare_engines import correctness_guard

    rows = [{"config": "studio-lora", "first_loss": 12.601, "last_loss": 12.2},
            {"config": "studio-lora-plain", "first_loss": 12.6007, "last_loss": 12.21}]
    assert correctness_guard(rows)["ok"]
    rows[0]["first_loss"] = 13.5
    assert not correctness_guard(rows)["ok"]
    rows[0]["first_loss"], rows[0]["last_loss"] = 12.601, 14.0  # same forward, different updates
    assert not correctness_guard(rows)["ok"]
    assert correctness_guard([{"config": "seed"}]) is None


def test_engine_comparison_runs_configs_on_separate_gpus_and_keeps_failed_logs(tmp_path, monkeypatch, capsys):
    import sys

    from studio.benchmarks import compare_engines

    script = ("import json, os, sys, time; name = sys.argv[1]; time.sleep(0.3)\n"
              "if name == 'seed': sys.exit('boom')\n"
              "print('RESULT ' + json.dumps({'tokens_per_s': 1.0, 'seen': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
              "                               'alloc': os.environ.get('PYTORCH_CUDA_ALLOC_CONF')}))")
    monkeypatch.setattr(compare_engines, "command_for",
                        lambda name, model_dir, steps: ("studio", [sys.executable, "-c", script, name]))
    names = ["studio-lora", "seed", "hf-lora", "studio-qlora", "studio-lora-vary-expandable"]
    assert compare_engines.main(["unused", str(tmp_path), "--gpus", "2", "--only", *names]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    by_name = {row["config"]: row for row in rows}
    assert set(by_name) == set(names)
    assert {row["gpu"] for row in rows} == {"0", "1"}
    assert all(row["seen"] == row["gpu"] for row in rows if row["config"] != "seed")  # each alone on its GPU
    assert by_name["seed"]["status"] == "failed" and (tmp_path / "seed.log").exists()
    assert not (tmp_path / "hf-lora.log").exists()  # successful runs keep no log
    table = capsys.readouterr().out.split("| config |")[1]
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:7]] == names  # the order asked
    assert by_name["studio-lora-vary-expandable"]["alloc"] == "expandable_segments:True"  # its own environment
    assert by_name["hf-lora"]["alloc"] is None


def rows_of(lengths):
    return [{"input_ids": [index] * length, "labels": [index] * length} for index, length in enumerate(lengths)]


def test_packs_hold_whole_rows_within_max_length_and_each_row_once():
    import random

    from studio.train.packing import pack_rows

    rng = random.Random(3)
    lengths = [rng.randint(50, 4096) for _ in range(500)] + [4096, 5000]  # 5000: over the capacity
    packs = pack_rows(rows_of(lengths), 4096)
    seen = sorted(row["input_ids"][0] for pack in packs for row in pack["rows"])
    assert seen == list(range(len(lengths)))  # every row once, none split
    for pack in packs:
        total = sum(len(row["input_ids"]) for row in pack["rows"])
        assert total <= 4096 or len(pack["rows"]) == 1
    lower_bound = -(-sum(lengths) // 4096)
    assert len(packs) <= lower_bound * 11 // 9 + 2  # best-fit decreasing's guarantee
    assert pack_rows(rows_of(lengths), 4096) == packs  # deterministic


def test_packing_refuses_a_capacity_of_zero():
    from studio.train.packing import pack_rows

    with pytest.raises(ValueError, match="max_length"):
        pack_rows(rows_of([3]), 0)


def test_a_batch_of_packs_collates_like_its_rows(demo_tokenizer, batch):
    from studio.train.packing import pack_rows

    collate = make_collator(demo_tokenizer, packing=True, sequence_offsets=True)
    packs = pack_rows([dict(row) for row in batch], 256)
    assert len(packs) < len(batch)  # short demo rows share packs
    from_packs = collate(packs)
    from_rows = collate([row for pack in packs for row in pack["rows"]])
    assert from_packs.keys() == from_rows.keys()
    for key, value in from_rows.items():
        assert torch.equal(torch.as_tensor(from_packs[key]), torch.as_tensor(value)), key


def test_an_epoch_of_packed_training_is_one_step_per_pack(tmp_path, demo_tokenizer):
    from studio.train.packing import pack_rows

    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(tmp_path / "packed"), epochs=1,
                            batch_size=1, grad_accum=1, packing=True, max_length=512)
    packs = pack_rows(prepare_data(config, demo_tokenizer).train, 512)
    job = TrainingJob(config)
    status = job.run()
    assert status["state"] == COMPLETED and status["step"] == len(packs)
    tokens = sum(len(row["input_ids"]) for pack in packs for row in pack["rows"])
    assert job.metrics()[-1]["tokens_seen"] == tokens
