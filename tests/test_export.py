"""What leaves the studio names no folder of this machine, and says what it is: the adapter zip with its model
card, the merged model, and the report (settings in words, the loss labelled right, math drawn offline)."""

import json
import re
import zipfile

import pytest

from studio.chat.export import adapter_zip, html_report, local_paths_in, merge_adapter, shareable_adapter
from studio.config import DEMO_MODEL_DIR, PROJECT_ROOT, SAMPLES_DIR
from studio.runs import RunFolder
from studio.train.job import default_config

# A run whose lowest loss (step 3) is not its last (step 4): the report once paired the last step with the lowest.
LOSSES = [(1, 0.75), (2, 0.31), (3, 0.044), (4, 0.0529)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as training leaves it: its config and status, metrics, and an adapter PEFT saved (which
    records the demo model's absolute folder as its base), with PEFT's blank model card."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("export") / "demo-lora-20261201-120000"
    folder.mkdir()
    config = default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(folder), model="demo").to_json()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "status.json").write_text(json.dumps({"state": "completed", "data": {
        "rows_read": 200, "rows_left_out": 0, "rows_truncated": 0, "train_rows": 200, "eval_rows": 0,
        "prepared": str(folder.parent / "cache" / "prepared" / "abc")}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": step, "loss": loss}) + "\n"
                                                  for step, loss in LOSSES))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(DEMO_MODEL_DIR))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(folder / "adapter")
    assert str(DEMO_MODEL_DIR) in (folder / "adapter" / "adapter_config.json").read_text()  # PEFT's local path
    return RunFolder(folder)


def test_the_adapter_zip_names_its_base_and_no_local_folder(run, tmp_path):
    archive = adapter_zip(run.path, tmp_path)
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(tmp_path / "unzipped")
        names = sorted(name.split("/", 1)[1] for name in handle.namelist())
    assert "README.md" in names and "adapter_config.json" in names
    folder = tmp_path / "unzipped" / f"{run.path.name}-adapter"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "demo"
    assert local_paths_in(folder, run.path, DEMO_MODEL_DIR) == []
    for path in folder.iterdir():  # no folder of this machine, in any file
        if path.suffix in (".json", ".md", ".jinja", ".txt"):
            text = path.read_text()
            assert str(PROJECT_ROOT) not in text and str(run.path) not in text, path.name


def test_a_run_on_a_hub_model_is_named_by_its_hub_id(run, tmp_path):
    config = json.loads((run.path / "config.json").read_text())
    hub = tmp_path / "hub-run"
    hub.mkdir()
    (hub / "config.json").write_text(json.dumps({**config, "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}))
    (hub / "status.json").write_text("{}")
    import shutil

    shutil.copytree(run.path / "adapter", hub / "adapter")
    folder = shareable_adapter(hub, tmp_path / "out")
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    card = (folder / "README.md").read_text()
    assert "base_model: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in card
    assert 'from_pretrained("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"' in card


def test_the_zip_holds_a_model_card_not_peft_s_template(run, tmp_path):
    assert "[More Information Needed]" in (run.path / "adapter" / "README.md").read_text()  # what PEFT wrote
    card = (shareable_adapter(run.path, tmp_path) / "README.md").read_text()
    assert "[More Information Needed]" not in card
    assert "demo-train.jsonl" in card and str(SAMPLES_DIR) not in card  # the data file by its name only
    assert "200 read" in card
    assert "rank 16, alpha 32" in card and "every linear layer" in card and "lora_r" not in card
    assert "Final loss 0.0529 at step 4; lowest 0.0440 at step 3" in card
    assert "| 3 | 0.0440 |" in card  # the loss table
    assert "from peft import PeftModel" in card and "PeftModel.from_pretrained(base," in card


def test_the_card_of_a_checkpoint_stops_at_its_own_step(run, tmp_path):
    import shutil

    shutil.copytree(run.path / "adapter", run.path / "checkpoint-2")
    (run.path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    try:
        card = (shareable_adapter(run.path / "checkpoint-2", tmp_path) / "README.md").read_text()
    finally:
        shutil.rmtree(run.path / "checkpoint-2")
    assert "Final loss 0.3100 at step 2" in card and "0.0529" not in card


def test_the_merged_model_names_no_local_folder(run, tmp_path):
    folder, _ = merge_adapter(run.path, tmp_path / "merged")
    assert (folder / "model.safetensors").exists()
    assert local_paths_in(folder, run.path, DEMO_MODEL_DIR) == []
    for path in folder.glob("*.json"):
        if path.name != "tokenizer.json":
            assert str(DEMO_MODEL_DIR) not in path.read_text(), path.name


def test_the_report_says_its_settings_in_words_and_labels_the_loss_right(run):
    page = html_report(run_config=run.read_config(), metrics=run.read_metrics(), status=run.read_status())
    body = page.split("<body>")[1]
    assert "Learning rate" in body and "learning_rate" not in body and "lora_r" not in body
    assert "<td></td>" not in body  # no empty cell
    assert "step 4 · loss 0.0529" in body  # the last step with its own loss
    assert "lowest 0.0440 · step 3" in body and "step 4 · loss 0.044" not in body
    assert "Final loss 0.0529 at step 4; lowest 0.0440 at step 3" in body
    assert str(SAMPLES_DIR) not in body and "prepared" not in body  # no server folder in a page meant to be sent
    # Made before any batch compare: it says so, and how to add one.
    assert "No batch compare in this report" in body and "Run batch compare" in body


def _compare(answer_base, answer_lora):
    def side(answer, extracted, matches):
        return {"answer": answer, "reasoning_tokens": 5, "well_formed": True, "format_problem": None,
                "extracted_answer": extracted, "matches_reference": matches, "shows_pattern": True}

    return {"pattern": r"\\boxed\{(.+)\}", "settings": {},
            "summary": {"prompts": 1, "base": {"format_compliance": 100.0, "answer_match": 0.0, "pattern": 100.0,
                                               "mean_reasoning_tokens": 5.0},
                        "lora": {"format_compliance": 100.0, "answer_match": 100.0, "pattern": 100.0,
                                 "mean_reasoning_tokens": 5.0}},
            "rows": [{"prompt": "What is $\\frac{1}{2} + \\frac{1}{2}$?", "reference": "1",
                      "base": side(answer_base, "2", False), "lora": side(answer_lora, "1", True)}]}


def test_the_report_draws_math_as_mathml_with_nothing_to_fetch(run):
    page = html_report(run_config=run.read_config(), metrics=run.read_metrics(), status=run.read_status(),
                       compare=_compare("So \\boxed{2}", "So \\boxed{1}"))
    body = page.split("<body>")[1]
    assert "<math" in body and "<mfrac>" in body  # the prompt's fraction
    assert body.count('<menclose notation="box">') == 2  # each \boxed{…}, drawn as a box
    assert "menclose[notation~='box']" in page  # browsers draw no box for menclose by themselves: the style does
    assert "\\boxed" not in body.split("<h2>Every prompt</h2>")[1]  # no raw LaTeX left in the answers
    assert not re.search(r"(src|href)=", body) and "<script" not in page  # offline: nothing to fetch
    assert "http" not in body
    assert "No batch compare" not in body and "keeps the reasoning format" in body
    assert "<code>&lt;/think&gt;</code>" in body  # the columns are explained in words


def test_without_latex2mathml_the_report_still_shows_a_boxed_answer(run, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_converter(name, *args, **kwargs):
        if name.startswith("latex2mathml"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_converter)
    page = html_report(run_config=run.read_config(), metrics=run.read_metrics(),
                       compare=_compare("So \\boxed{2}", "So \\boxed{1}"))
    assert '<span class="boxed">1</span>' in page and "<math" not in page


def test_a_push_uploads_the_cleaned_adapter_not_the_run_folder(run, monkeypatch):
    from studio.ui import chat_tab

    pushed = {}

    def fake_push(folder, repo_id, token):
        pushed["folder"] = folder
        return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(chat_tab, "push_to_hub", fake_push)
    assert chat_tab.push(str(run.path), "me/demo-lora", "hf_token", "adapter", None, lambda *a, **k: None) == \
        "Pushed to https://huggingface.co/me/demo-lora"
    folder = pushed["folder"]
    assert folder != run.path / "adapter" and local_paths_in(folder, run.path, DEMO_MODEL_DIR) == []
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "demo"
    assert "[More Information Needed]" not in (folder / "README.md").read_text()


def test_a_folder_naming_a_local_path_is_not_pushed(tmp_path):
    from studio.chat.export import push_to_hub

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(DEMO_MODEL_DIR)}))
    with pytest.raises(ValueError, match="would name folders of this machine") as error:
        push_to_hub(tmp_path, "me/model", "hf_token")
    assert "adapter_config.json" in str(error.value)
