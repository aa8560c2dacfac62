"""Training tokens prepared once (studio.data.prepared): the same rows as tokenizing in memory, reused by later
runs and by the Data tab's check, keyed by what changes them, safe against a crash while written."""

import random
import shutil

import pytest

from studio.config import SAMPLES_DIR
from studio.data import prepared as prepared_module
from studio.data.prepared import cache_info, clear_cache, open_set, prepared_for_training, prune, source_key
from studio.train.job import default_config, prepare_data

DEMO_TRAIN = SAMPLES_DIR / "demo-train.jsonl"
BROKEN = SAMPLES_DIR / "broken-sample.jsonl"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_PREPARED_DIR", str(tmp_path / "prepared"))
    return tmp_path / "prepared"


def copy_of(path, tmp_path, name="data.jsonl"):
    target = tmp_path / name
    shutil.copyfile(path, target)
    return target


def in_memory_rows(config, tokenizer):
    """What training fed before prepared sets: every row without errors encoded in memory, shuffled by seed."""
    from studio.data.checks import trainable_messages
    from studio.data.template import encode_examples
    from studio.data.validate import validate

    report = validate(config.data, lengths=False, overrides=config.mapping or None)
    errors = report.error_rows
    conversations = [trainable_messages(record.messages) for record in report.dataset.records
                     if record.number not in errors]
    encoded = encode_examples(tokenizer, conversations)
    examples = [{"input_ids": example.input_ids[:config.max_length], "labels": example.labels[:config.max_length]}
                for example in encoded]
    random.Random(config.seed).shuffle(examples)
    held_out = int(len(examples) * config.eval_split)
    return examples[held_out:], examples[:held_out], sum(1 for example in encoded if len(example) > config.max_length)


@pytest.mark.parametrize("source", [DEMO_TRAIN, BROKEN])
@pytest.mark.parametrize("max_length", [64, 4096])
def test_the_rows_are_those_training_tokenized_in_memory_packed_and_not(tmp_path, demo_tokenizer, source, max_length):
    from studio.train.packing import PackedRows, pack_rows

    config = default_config(str(copy_of(source, tmp_path)), str(tmp_path / "run"), max_length=max_length,
                            eval_split=0.1)
    data = prepare_data(config, demo_tokenizer)
    train, held_out, truncated = in_memory_rows(config, demo_tokenizer)
    assert list(data.train) == train and list(data.eval) == held_out
    assert [pack["rows"] for pack in pack_rows(train, max_length)] == \
        [pack["rows"] for pack in PackedRows(data.train, max_length)]
    assert data.rows_truncated == truncated and (truncated > 0 if max_length == 64 else truncated <= 1)


def test_a_second_run_and_other_settings_reuse_the_tokens(tmp_path, demo_tokenizer, monkeypatch):
    data = copy_of(DEMO_TRAIN, tmp_path)
    first = prepare_data(default_config(str(data), str(tmp_path / "a")), demo_tokenizer)
    assert not first.reused

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr("studio.data.template.encode_examples", no_tokenizing)
    for settings in ({}, {"max_length": 128}, {"learning_rate": 1e-4, "seed": 3}, {"eval_split": 0.2}):
        again = prepare_data(default_config(str(data), str(tmp_path / "b"), **settings), demo_tokenizer)
        assert again.reused and again.cache == first.cache
    renamed = copy_of(DEMO_TRAIN, tmp_path, "same-bytes-other-name.jsonl")
    assert prepare_data(default_config(str(renamed), str(tmp_path / "c")), demo_tokenizer).reused


def test_the_data_tab_check_fills_the_cache_so_start_does_not_tokenize(tmp_path, demo_tokenizer, monkeypatch):
    from studio.data.validate import validate

    data = copy_of(BROKEN, tmp_path)
    report = validate(str(data), model="demo", max_length=4096)
    assert cache_info()["sets"] == 1 and report.prepared and report.to_json()["prepared"] is True
    assert validate(str(data), model="demo", max_length=64).prepared  # found, not written again
    assert cache_info()["sets"] == 1
    assert not validate(str(data), model="demo", lengths=False).prepared
    monkeypatch.setattr("studio.data.template.encode_examples", lambda *a, **k: pytest.fail("tokenized again"))
    # Detected layout (the Data tab's check) and the mapping it resolved (the Train tab's "as mapped") both hit.
    for mapping in (None, report.dataset.mapping.to_overrides()):
        prepared = prepare_data(default_config(str(data), str(tmp_path / "run"), mapping=mapping), demo_tokenizer)
        assert prepared.reused and prepared.rows_left_out == len(report.error_rows)
        assert len(prepared.train) + len(prepared.eval) == report.valid_rows


def test_what_changes_the_tokens_changes_the_key(tmp_path, demo_tokenizer):
    from studio.data.tokenizer import length_tokenizer

    data = copy_of(DEMO_TRAIN, tmp_path)
    key = source_key(str(data), None, demo_tokenizer)
    assert source_key(str(data), {"format": "", "prompt": ""}, demo_tokenizer) == key  # blank boxes: detected
    assert source_key(str(data), {"prompt": "query"}, demo_tokenizer) != key
    qwen, _, _ = length_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    assert source_key(str(data), None, qwen) != key
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    assert source_key(str(data), None, demo_tokenizer) != key
    assert source_key("open-r1/OpenR1-Math-220k", None, demo_tokenizer) is None  # a Hub id: keyed by its rows


def test_a_hub_dataset_is_keyed_by_its_rows(tmp_path, demo_tokenizer):
    from studio.data.validate import validate

    one = validate(str(copy_of(DEMO_TRAIN, tmp_path, "a.jsonl")), lengths=False)
    two = validate(str(copy_of(DEMO_TRAIN, tmp_path, "b.json")), lengths=False)  # other bytes, same rows
    other = validate(str(copy_of(BROKEN, tmp_path, "c.jsonl")), lengths=False)
    key = prepared_module.content_key(one, demo_tokenizer)
    assert prepared_module.content_key(two, demo_tokenizer) == key != prepared_module.content_key(other, demo_tokenizer)


def test_a_set_cut_by_a_crash_is_never_read_and_is_made_again(tmp_path, demo_tokenizer, own_cache):
    data = copy_of(DEMO_TRAIN, tmp_path)
    prepared, reused = prepared_for_training(str(data), None, demo_tokenizer)
    key = prepared.meta["key"]
    (prepared.folder / prepared_module.META_FILE).unlink()  # as if the process died before the set was whole
    assert open_set(key) is None
    again, reused = prepared_for_training(str(data), None, demo_tokenizer)
    assert not reused and len(again) == len(prepared)
    # A write interrupted for good leaves only a hidden partial folder, never read, swept after a day.
    partial = own_cache / f".{key}.123.456.partial"
    partial.mkdir()
    assert cache_info()["sets"] == 1
    import os
    import time

    os.utime(partial, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    prune()
    assert not partial.exists()


def test_the_cache_is_bounded_shown_and_cleared(tmp_path, demo_tokenizer):
    first, _ = prepared_for_training(str(copy_of(DEMO_TRAIN, tmp_path, "a.jsonl")), None, demo_tokenizer)
    second, _ = prepared_for_training(str(copy_of(BROKEN, tmp_path, "b.jsonl")), None, demo_tokenizer)
    info = cache_info()
    assert info["sets"] == 2 and info["bytes"] > 0
    prune(limit=info["bytes"] - 1)  # over the limit: the set used least recently goes, with its alias
    assert cache_info()["sets"] == 1 and open_set(second.meta["key"]) is not None
    import os
    import time

    meta = second.folder / prepared_module.META_FILE
    os.utime(meta, (time.time() - 7200, time.time() - 7200))  # unused for two hours
    prune(max_age_s=10_000)
    assert cache_info()["sets"] == 1  # younger than the age limit: kept
    prune(max_age_s=3600)  # a shared server's file time to live: unused sets go by age
    assert cache_info()["sets"] == 0
    prepared_for_training(str(copy_of(DEMO_TRAIN, tmp_path, "a.jsonl")), None, demo_tokenizer)
    assert clear_cache() > 0 and cache_info() == {**info, "sets": 0, "bytes": 0}


def test_a_dataset_with_no_trainable_row_is_a_clear_message(tmp_path, demo_tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "response": ""}\n')
    with pytest.raises(ValueError, match="no row without errors to train on"):
        prepare_data(default_config(str(bad), str(tmp_path / "run")), demo_tokenizer)


def test_the_cli_trains_once_per_file_and_shows_and_clears_the_cache(tmp_path, capsys):
    import json

    from studio.cli import main

    data = copy_of(DEMO_TRAIN, tmp_path)
    for run, words in (("a", "tokens prepared in"), ("b", "tokens reused from")):
        assert main(["train", "--data", str(data), "--output", str(tmp_path / run), "--max-steps", "1"]) == 0
        assert words in capsys.readouterr().out
    assert main(["cache", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sets"] == 1 and info["bytes"] > 0 and info["path"] == str(tmp_path / "prepared")
    assert main(["cache", "--clear"]) == 0
    assert "cleared" in capsys.readouterr().out and cache_info()["sets"] == 0


@pytest.mark.parametrize("model", ["demo", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                                   "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"])
def test_ids_from_the_tokenizer_core_equal_the_tokenizer_call(model):
    from studio.data.template import token_ids
    from studio.data.tokenizer import length_tokenizer

    tokenizer, _, _ = length_tokenizer(model)
    texts = ["<｜User｜>What is 2 + 2?<｜Assistant｜><think>\n", "Two and two make four.\n</think>\n\n",
             "The answer is \\boxed{4}.<｜end▁of▁sentence｜>", "", "  spaces\tand\nnew lines ", "中文 und Umlaute äöü"]
    assert token_ids(tokenizer, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_training_reads_past_a_check_s_limits_and_says_what_it_left(tmp_path, demo_tokenizer, monkeypatch, capsys):
    """A check stops at STUDIO_MAX_DATASET_CHARS; training reads on, to its own limits, and names what is left."""
    import json

    from studio import config as studio_config
    from studio.cli import main
    from studio.data import readers
    from studio.data.validate import validate

    data = copy_of(DEMO_TRAIN, tmp_path)
    rows = len(data.read_text().splitlines())
    size = len(data.read_text())
    monkeypatch.setattr(readers, "MAX_DATASET_CHARS", size // 4)
    checked = validate(str(data), model="demo")
    assert checked.dataset.not_read and checked.rows < rows and not checked.prepared  # a cut check keeps nothing
    whole = prepare_data(default_config(str(data), str(tmp_path / "run")), demo_tokenizer)
    assert whole.rows_read == rows and whole.not_read is None and not whole.reused
    # A set of the whole file is reused under any limits (it is on disk already, memory-mapped).
    monkeypatch.setattr(studio_config, "MAX_TRAIN_DATASET_CHARS", size // 2)
    assert prepare_data(default_config(str(data), str(tmp_path / "run2")), demo_tokenizer).reused
    other = copy_of(DEMO_TRAIN, tmp_path, "other.jsonl")
    other.write_text(other.read_text() + data.read_text().splitlines()[0] + "\n")  # other bytes: no set yet
    half = prepare_data(default_config(str(other), str(tmp_path / "run3")), demo_tokenizer)
    assert half.not_read and "STUDIO_MAX_TRAIN_CHARS" in half.not_read and half.rows_read < rows
    assert main(["train", "--data", str(other), "--output", str(tmp_path / "cli"), "--max-steps", "1"]) == 0
    assert "not all of the file was read" in capsys.readouterr().err  # the reused cut set still says so
    monkeypatch.setattr(studio_config, "MAX_TRAIN_DATASET_CHARS", 10 * size)
    assert prepare_data(default_config(str(other), str(tmp_path / "run4")), demo_tokenizer).not_read is None
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")  # a shared server trains within a check's limits
    third = copy_of(DEMO_TRAIN, tmp_path, "third.jsonl")
    third.write_text(third.read_text() + data.read_text().splitlines()[1] + "\n")
    shared = prepare_data(default_config(str(third), str(tmp_path / "run5")), demo_tokenizer)
    assert shared.rows_read == checked.rows and "STUDIO_MAX_DATASET_CHARS" in shared.not_read
    json.dumps(shared.not_read)
