"""The Chat tab through gradio_client: both panes stream, batch compare, export, report."""

import time
import zipfile

import pytest
from gradio_client import handle_file

from studio.chat.view import message_text
from studio.config import SAMPLES_DIR
from tests.helpers import train_settings

PROMPT = "Tom has 4 apples and buys 5 more. How many apples does he have now?"


@pytest.fixture(scope="module")
def run_path(client):
    """A short demo training run made through the Train tab's own endpoint."""
    settings = train_settings(batch_size=8)
    client.predict(str(SAMPLES_DIR / "demo-train.jsonl"), *settings, api_name="/start_training")
    deadline = time.time() + 180
    while time.time() < deadline:
        status = client.predict(api_name="/training_status")
        if "completed" in status[0] or "failed" in status[0]:
            break
        time.sleep(0.5)
    assert "completed" in status[0], status[0]
    return status[5]["data"][0][0]  # the newest run in the history table


def file_path(value):
    """A DownloadButton's value as the client hands it back."""
    return value if isinstance(value, str) else value.get("value") or value.get("path")


def sampling(greedy=True):
    return [120, 0.6, 0.95, 0, greedy]  # max_new_tokens, temperature, top_p, seed, greedy


def test_both_panes_stream(client, run_path, studio_home):
    adapter = str(studio_home / "runs" / run_path)
    job = client.submit(PROMPT, [], [], adapter, "", *sampling(), api_name="/chat")
    job.result(timeout=300)
    updates = job.outputs()
    assert len(updates) > 2  # it streamed
    _, base, lora, base_stats, lora_stats = updates[-1]
    for pane in (base, lora):
        # The pane folds the reasoning into its own titled message and shows the answer after it.
        assert [message["role"] for message in pane] == ["user", "assistant", "assistant"]
        assert pane[1]["metadata"]["title"] == "Reasoning" and "+" in str(pane[1]["content"])
        assert "answer" in str(pane[2]["content"]).lower()
    assert "reasoning" in base_stats and "tokens/s" in lora_stats
    grew = [sum(len(message_text(message["content"])) for message in update[2] if message["role"] == "assistant")
            for update in updates if update[2]]
    assert grew == sorted(grew) and grew[0] < grew[-1]


def test_second_turn_keeps_history(client, run_path, studio_home):
    adapter = str(studio_home / "runs" / run_path)
    _, base, lora, *_ = client.predict(PROMPT, [], [], adapter, "", *sampling(), api_name="/chat")
    _, base, lora, *_ = client.predict("And 2 more?", base, lora, adapter, "", *sampling(), api_name="/chat")
    assert [message["role"] for message in lora if not (message.get("metadata") or {}).get("title")] == [
        "user", "assistant", "user", "assistant"]


def test_batch_compare_zip_and_report(client, run_path, studio_home, tmp_path):
    adapter = str(studio_home / "runs" / run_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is 3 + 4?", "reference": "7"}\n{"prompt": "What is 9 - 2?", "reference": "7"}\n')
    before = open(file_path(client.predict(adapter, api_name="/report")), encoding="utf-8").read()
    assert "No batch compare in this report" in before  # made before a compare: it says so
    summary, table = client.predict(adapter, "", handle_file(str(prompts)), r"\\boxed\{", *sampling(),
                                    api_name="/batch_compare")
    assert "BASE" in summary and "LORA" in summary and "%" in summary
    assert "**format** — keeps R1 format" in summary  # what each column measures, in words
    assert [row[0] for row in table["data"]] == ["What is 3 + 4?", "What is 9 - 2?"]
    archive = file_path(client.predict(adapter, api_name="/adapter_zip"))
    with zipfile.ZipFile(archive) as handle:
        assert any(name.endswith("adapter_config.json") for name in handle.namelist())
        assert any(name.endswith("README.md") for name in handle.namelist())
    report = file_path(client.predict(adapter, api_name="/report"))
    page = open(report, encoding="utf-8").read()
    assert "<svg" in page and "Training loss" in page
    assert "What is 3 + 4?" in page and "No batch compare in this report" not in page  # the session's compare


def test_a_bad_answer_pattern_is_quoted_as_typed(client, run_path, studio_home):
    adapter = str(studio_home / "runs" / run_path)
    typed = r"\boxed{(\d+"
    with pytest.raises(Exception) as error:
        client.predict(adapter, "", None, typed, *sampling(), api_name="/batch_compare")
    assert f"“{typed}”" in str(error.value) and "\\\\" not in str(error.value)


def test_chat_without_adapter_is_a_message(client):
    with pytest.raises(Exception, match="Pick a run"):
        client.predict(PROMPT, [], [], "", "", *sampling(), api_name="/chat")


def test_push_offline_is_a_message(client, run_path, studio_home):
    adapter = str(studio_home / "runs" / run_path)
    with pytest.raises(Exception, match="HF_HUB_OFFLINE"):
        client.predict(adapter, "me/model", "hf_secret", "adapter", api_name="/push")


def test_the_run_list_holds_run_names_not_server_paths(client, run_path, studio_home):
    """The list's values are run names, turned back into folders on the server (the page never holds a path)."""
    from studio.ui.chat_tab import adapter_choices

    update, empty = adapter_choices()
    values = [value for _, value in update["choices"]]
    assert run_path in values and not [value for value in values if "/" in value or str(studio_home) in value]
    assert empty["visible"] is False
    _, _, lora, *_ = client.predict(PROMPT, [], [], run_path, "", *sampling(), api_name="/chat")
    assert lora[-1]["role"] == "assistant"
    with zipfile.ZipFile(file_path(client.predict(run_path, api_name="/adapter_zip"))) as handle:
        assert any(name.endswith("adapter_config.json") for name in handle.namelist())
