"""Base vs LoRA generation, batch compare, export and report, on the demo model after the default demo training."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from studio.chat.compare import DEMO_PATTERN, read_prompts, run_compare
from studio.config import PROJECT_ROOT, SAMPLES_DIR
from studio.chat.export import adapter_zip, html_report, merge_adapter
from studio.chat.generate import BASE, LORA, ChatEngine, SamplingSettings, resolve_adapter
from studio.runs import COMPLETED, RunFolder
from studio.train.job import TrainingJob, default_config

GREEDY = SamplingSettings(temperature=0, max_new_tokens=160)
PROMPT = "Tom has 4 apples and buys 5 more. How many apples does he have now?"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The default demo training: the Train tab's defaults on the bundled demo set."""
    folder = tmp_path_factory.mktemp("chat") / "demo-run"
    status = TrainingJob(default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(folder))).run()
    assert status["state"] == COMPLETED, status
    return folder


@pytest.fixture(scope="module")
def engine(demo_run):
    engine = ChatEngine()
    engine.load("demo", str(demo_run))
    return engine


def test_mixed_batch_equals_separate_generations(engine):
    conversation = [{"role": "user", "content": PROMPT}]
    together = engine.answer({BASE: conversation, LORA: conversation}, GREEDY)
    base_alone = engine.answer({BASE: conversation}, GREEDY)[BASE]
    engine.mixed_batches = False  # the two-pass fallback (DoRA, merged weights) must agree too
    try:
        lora_alone = engine.answer({LORA: conversation}, GREEDY)[LORA]
        fallback = engine.answer({BASE: conversation, LORA: conversation}, GREEDY)
    finally:
        engine.mixed_batches = True
    assert together[BASE].text == base_alone.text == fallback[BASE].text
    assert together[LORA].text == lora_alone.text == fallback[LORA].text
    assert together[BASE].text != together[LORA].text  # the fine-tune changed something


def test_streaming_grows_and_splits_reasoning(engine):
    conversation = [{"role": "user", "content": PROMPT}]
    lengths = [len(replies[LORA].text) for replies in engine.stream({BASE: conversation, LORA: conversation}, GREEDY)]
    assert len(lengths) > 3 and lengths == sorted(lengths) and lengths[-1] > 0
    reply = engine.answer({LORA: conversation}, GREEDY)[LORA]
    assert reply.well_formed and "</think>" in reply.text and "<think>" not in reply.text
    assert reply.display().startswith("<think>\n")  # folds in the chat pane
    assert reply.reasoning and reply.answer and 0 < reply.reasoning_tokens < reply.tokens


def test_demo_compare_shows_the_taught_behaviour(engine):
    prompts = read_prompts(SAMPLES_DIR / "demo-heldout.jsonl")
    result = run_compare(engine, prompts, GREEDY, pattern=DEMO_PATTERN).to_json()
    summary = result["summary"]
    assert summary["prompts"] == len(prompts) >= 20
    assert summary["lora"]["pattern"] >= 80, summary
    assert summary["base"]["pattern"] <= 20, summary
    assert summary["lora"]["format_compliance"] >= 95, summary
    row = result["rows"][0]
    assert {"prompt", "reference", "base", "lora"} <= set(row)
    assert {"answer", "reasoning_tokens", "well_formed", "format_problem", "extracted_answer", "matches_reference",
            "shows_pattern"} <= set(row["lora"])
    # The demo teaches the answer in \boxed{}: the LoRA's answers are taken from it and match the references.
    assert summary["lora"]["answer_match"] >= 60 and summary["lora"]["answer_match"] > summary["base"]["answer_match"]
    assert not [text for row in result["rows"] for side in ("base", "lora") for text in row[side].values()
                if isinstance(text, str) and "\ufffd" in text]


def test_stop_ends_a_generation(engine):
    conversation = [{"role": "user", "content": PROMPT}]
    settings = SamplingSettings(temperature=0, max_new_tokens=150)
    *_, full = engine.stream({BASE: conversation, LORA: conversation}, settings)  # the same, not stopped
    seen = 0
    for replies in engine.stream({BASE: conversation, LORA: conversation}, settings):
        seen += 1
        if seen == 2:
            engine.stop()
    assert full[LORA].tokens > 10
    assert replies[LORA].tokens < full[LORA].tokens // 2 and replies[BASE].tokens < full[BASE].tokens // 2


def test_adapter_zip_loads_with_peft(demo_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    archive = adapter_zip(demo_run, tmp_path)
    with zipfile.ZipFile(archive) as handle:
        names = handle.namelist()
        handle.extractall(tmp_path / "unzipped")
    assert any(name.endswith("adapter_model.safetensors") for name in names)
    folder = next((tmp_path / "unzipped").iterdir())
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "demo"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model("demo")), folder)
    assert any("lora_B" in name for name, _ in model.named_parameters())


def test_merged_model_answers_like_base_plus_adapter(engine, demo_run, tmp_path):
    folder, note = merge_adapter(demo_run, tmp_path / "merged")
    assert (folder / "model.safetensors").exists() and "Merged" in note
    merged = ChatEngine()
    merged.load(str(folder), None)
    conversation = [{"role": "user", "content": PROMPT}]
    assert merged.answer({BASE: conversation}, GREEDY)[BASE].text == engine.answer({LORA: conversation}, GREEDY)[LORA].text


def test_report_holds_the_curve_and_the_table(engine, demo_run):
    prompts = read_prompts(SAMPLES_DIR / "demo-heldout.jsonl")[:3]
    compare = run_compare(engine, prompts, GREEDY, pattern=DEMO_PATTERN).to_json()
    folder = RunFolder(demo_run)
    page = html_report(run_config=folder.read_config(), metrics=folder.read_metrics(), compare=compare,
                       status=folder.read_status())
    assert page.startswith("<!doctype html>") and "<polyline" in page and "<svg" in page
    assert prompts[0].text.split()[0] in page and "keeps the reasoning format" in page
    assert "Learning rate" in page and "http" not in page.split("<body>")[1]  # self-contained
    assert "\ufffd" not in page  # no half-decoded character in a page meant to be sent


def test_resolve_adapter_errors(tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapter"):
        resolve_adapter(tmp_path)


def test_cli_chat_json(demo_run):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "studio", "chat", "--adapter", str(demo_run), "--prompt", PROMPT,
               "--temperature", "0", "--max-new-tokens", "120", "--json"]
    runs = [subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
            for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    result = json.loads(runs[0].stdout)
    assert result["prompt"] == PROMPT
    for side in ("base", "lora"):
        assert {"text", "reasoning", "answer", "tokens"} <= set(result[side])
    second = json.loads(runs[1].stdout)
    for side in ("base", "lora"):  # temperature 0: greedy and deterministic (speed aside)
        assert {k: v for k, v in result[side].items() if k != "tokens_per_s"} == \
            {k: v for k, v in second[side].items() if k != "tokens_per_s"}
    bad = subprocess.run(command[:5] + ["/nonexistent"] + command[6:], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and "no LoRA adapter" in json.loads(bad.stdout)["error"]


@pytest.mark.parametrize("flags, named", [(["--top-p", "1.5"], "top-p"), (["--max-new-tokens", "0"], "max new tokens"),
                                          (["--temperature", "-1"], "temperature"),
                                          (["--model", "nobody/no-such-model"], "nobody/no-such-model")])
def test_cli_chat_bad_settings_are_a_message_not_a_traceback(demo_run, flags, named):
    command = [sys.executable, "-m", "studio", "chat", "--adapter", str(demo_run), "--prompt", PROMPT, "--json",
               *flags]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert named in json.loads(result.stdout)["error"]


def test_sampling_settings_refuse_values_generation_cannot_use():
    for values in ({"max_new_tokens": 0}, {"temperature": -0.1}, {"top_p": 0}, {"top_p": 1.01}):
        with pytest.raises(ValueError):
            SamplingSettings(**values)
    assert SamplingSettings(temperature=0, top_p=1.0).generate_kwargs()["do_sample"] is False


def test_prompt_files_are_read_as_datasets_are(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('\ufeff{"prompt": "What is 1 + 1?", "reference": "2"}\n\n{"question": "And 2 + 2?"}\n'.encode())
    assert [(p.text, p.reference) for p in read_prompts(bom)] == [("What is 1 + 1?", "2"), ("And 2 + 2?", None)]
    table = tmp_path / "prompts.csv"
    table.write_text("prompt,reference\nWhat is 5 + 5?,10\n")
    assert read_prompts(table)[0].reference == "10"


@pytest.mark.parametrize("name, text, message", [
    ("numbers.json", "[1, 2]", r"numbers.json, row 1: a prompt is a string or an object"),
    ("missing.jsonl", '{"prompt": "ok"}\n\n{"text": "no prompt"}\n', r"missing.jsonl, row 3: no `prompt`"),  # lines
    ("broken.jsonl", '{"prompt": "ok"}\n{"prompt": \n', r"broken.jsonl, row 2"),
])
def test_prompt_files_name_the_row_that_is_wrong(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_prompts(tmp_path / name)


def test_a_run_is_found_from_its_adapter_or_any_checkpoint(tmp_path):
    from studio.runs import run_of_adapter

    run = tmp_path / "run-1"
    for folder in ("adapter", "checkpoint-4", "checkpoint-8", "checkpoint-12"):
        (run / folder).mkdir(parents=True)
        (run / folder / "adapter_config.json").write_text("{}")
    for folder in ("checkpoint-4", "checkpoint-8"):
        (run / folder / "trainer_state.json").write_text("{}")
    assert [run_of_adapter(run / name) for name in ("adapter", "checkpoint-8")] == [run, run]
    assert run_of_adapter(tmp_path / "my-adapter") == tmp_path / "my-adapter"  # a folder of its own
    (run / "adapter" / "adapter_config.json").unlink()  # a stopped run without its final adapter
    assert resolve_adapter(run) == run / "checkpoint-8"  # checkpoint-12 is half written: no trainer_state.json
