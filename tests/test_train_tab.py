"""The Train tab through gradio_client: start, live status, one run at a time, stop, history."""

import re
import time

import pytest
import torch

from studio.config import SAMPLES_DIR
from tests.helpers import huge_model, no_valid_rows, snapshot, train_settings

DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")


def status(client):
    return client.predict(api_name="/training_status")


def wait_for(client, words, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = status(client)
        if any(word in result[0] for word in words):
            return result
        time.sleep(0.5)
    raise AssertionError(f"status never showed {words}: {result[0]}")


def test_train_live_then_history(client):
    client.predict(DEMO_TRAIN, *train_settings(max_steps=8), api_name="/start_training")
    result = wait_for(client, ["completed", "failed"])
    markdown, progress, loss = result[0], result[1], result[2]
    assert "completed" in markdown, markdown
    assert "step 8 / 8" in progress
    assert len(loss["value"]["data"]) == 8 and loss["label"] == "Loss"  # one loss point per step
    history = result[5]
    assert history["data"][0][1] == "completed"


def test_second_start_is_refused_and_stop_works(client):
    client.predict(DEMO_TRAIN, *train_settings(max_steps=200), api_name="/start_training")
    with pytest.raises(Exception, match="Another training run"):
        client.predict(DEMO_TRAIN, *train_settings(), api_name="/start_training")
    deadline = time.time() + 120
    while "step 0 " in status(client)[1] and time.time() < deadline:  # wait for a first step
        time.sleep(0.3)
    client.predict(api_name="/stop_training")
    result = wait_for(client, ["stopped", "failed"])
    assert "stopped" in result[0], result[0]
    assert "Resume" in result[0]


def test_offline_hub_model_is_refused_with_the_reason(client):
    with pytest.raises(Exception, match="not downloaded on this machine"):
        client.predict(DEMO_TRAIN, *train_settings(model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
                       api_name="/start_training")


def test_estimate_shows_a_badge(client):
    from studio.train.estimate import CPU_ESTIMATE_NOTE

    shown = client.predict(api_name="/estimate")
    assert "fits" in shown
    assert "no gradient checkpointing" in shown and CPU_ESTIMATE_NOTE in shown  # CPU: what auto chose, how rough


def test_bad_dataset_is_a_message(client, tmp_path):
    with pytest.raises(Exception, match="Choose a dataset"):
        client.predict("", *train_settings(), api_name="/start_training")


def badge_reason(client, data, settings) -> str:
    """The badge's words after its icon and verdict, up to the breakdown."""
    badge = client.predict(data, *settings, api_name="/estimate")
    assert badge.startswith("**⛔"), badge
    return re.match(r"\*\*⛔ [^*]+\*\* — (.*?)(?:\n\n<small>|$)", badge, re.S).group(1)


@pytest.mark.parametrize("case", ["qlora on cpu", "will not fit", "a folder", "a missing file", "no valid row"])
def test_start_refuses_what_cannot_run_with_the_badge_s_reason_and_makes_no_run(client, studio_home, tmp_path, case):
    """Start refuses, before a run folder is made, what the badge says cannot run here: the toast is the badge's
    reason, and the runs folder is unchanged (today's way made a run that then failed)."""
    data, settings = DEMO_TRAIN, train_settings()
    if case == "qlora on cpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        settings, words = train_settings(method="qlora"), "QLoRA needs a CUDA GPU"
    elif case == "will not fit":
        settings, words = train_settings(model=str(huge_model(tmp_path / "huge"))), "it will not fit"
    elif case == "a folder":
        data, words = str(tmp_path), "is a folder"
    elif case == "a missing file":
        data, words = str(tmp_path / "missing.jsonl"), "no such file"
    else:
        data, words = str(no_valid_rows(tmp_path / "none.jsonl")), "no row without errors"
    reason = badge_reason(client, data, settings)
    assert words in reason
    runs = studio_home / "runs"
    before = snapshot(runs)
    with pytest.raises(Exception) as error:
        client.predict(data, *settings, api_name="/start_training")
    assert str(error.value).strip() == reason.strip()
    assert snapshot(runs) == before


def test_a_cleared_number_box_is_a_message_naming_it(client):
    values = train_settings()
    values[7] = None  # Batch size, cleared
    with pytest.raises(Exception, match="Batch size is empty"):
        client.predict(DEMO_TRAIN, *values, api_name="/start_training")


def test_chat_settings_name_the_empty_or_impossible_box():
    from studio.ui.chat_tab import settings_from

    with pytest.raises(ValueError, match="Max new tokens is empty"):
        settings_from(None, 0.6, 0.95, 0, False)
    with pytest.raises(ValueError, match="top-p"):
        settings_from(64, 0.6, 0.0, 0, False)
    assert settings_from(64, 0.6, 0.95, -1, True).temperature == 0.0


def test_packing_from_the_tab_and_liger_refused_without_its_package(client, studio_home):
    client.predict(DEMO_TRAIN, *train_settings(max_steps=3, speedups=["packing"]), api_name="/start_training")
    result = wait_for(client, ["completed", "failed"])
    assert "completed" in result[0], result[0]
    run = result[5]["data"][0][0]
    assert '"packing": true' in (studio_home / "runs" / run / "config.json").read_text()
    with pytest.raises(Exception, match="liger-kernel"):
        client.predict(DEMO_TRAIN, *train_settings(speedups=["liger"]), api_name="/start_training")


def test_presets_fill_the_speed_ups_too():
    from studio.train.job import PRESETS
    from studio.ui.train_tab import PRESET_FIELDS, preset_values

    for name, preset in PRESETS.items():
        values = preset_values(name)
        assert len(values) == len(PRESET_FIELDS) + 1
        assert ("packing" in values[-1]) == bool(preset.get("packing")), name
        assert "fused_lora" in values[-1]
    assert "packing" in preset_values("R1-Distill LoRA (seed advice)")[-1]


def completed_run_name(client):
    history = status(client)[5]["data"]
    names = [row[0] for row in history if row[1] == "completed"]
    if not names:  # run alone: make one
        client.predict(DEMO_TRAIN, *train_settings(max_steps=2), api_name="/start_training")
        wait_for(client, ["completed", "failed"])
        return completed_run_name(client)
    return names[0]


def test_resume_is_disabled_with_the_reason_for_a_completed_run(client, studio_home):
    import gradio as gr

    from studio.ui.train_tab import resume_choice, select_run

    name = completed_run_name(client)
    folder = studio_home / "runs" / name
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}
    event = gr.SelectData(None, {"index": [0, 0], "value": name, "row_value": [name, "completed"]})
    selected, button, note = select_run(event)
    assert selected == name and button["interactive"] is False
    assert "completed" in note and "overwrite" in note
    with pytest.raises(Exception, match="completed"):  # and the endpoint refuses it too
        client.predict(name, api_name="/resume_training")
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before
    assert resume_choice("")[0]["interactive"] is True


def test_a_run_left_running_by_a_dead_process_reads_interrupted(client, studio_home):
    """After a restart the app may get the dead run's pid again: the status's pid is alive, the lock is not held."""
    import os
    import shutil

    from studio.runs import STOP_MARKER, RunFolder
    from studio.ui.train_tab import refresh, resume_choice

    ghost = RunFolder(studio_home / "runs" / "ghost-of-a-restart")
    try:
        ghost.write_config({"model": "demo", "method": "lora", "data": DEMO_TRAIN, "output": str(ghost.path)})
        ghost.write_status("running", started=1.0, step=3, max_steps=8)  # pid: this process's, alive
        assert ghost.read_status()["pid"] == os.getpid()
        outputs = refresh()  # what the page's timer gets (the API leaves buttons out)
        start_button, stop_button = outputs[7], outputs[8]
        assert start_button["interactive"] is True and stop_button["interactive"] is False
        rows = {row[0]: row for row in status(client)[5]["data"]}
        assert rows[ghost.name][1] == "interrupted"
        assert resume_choice(ghost.name)[0]["interactive"] is True
        client.predict(api_name="/stop_training")  # nothing is going: a warning, and no stop marker left behind
        assert not (ghost.path / STOP_MARKER).exists()
    finally:
        shutil.rmtree(ghost.path, ignore_errors=True)


def test_the_save_boxes_reach_the_config():
    from studio.ui.train_tab import build_config

    config = build_config(DEMO_TRAIN, *train_settings(save_steps=5, save_minutes=2.5))
    assert (config.save_steps, config.save_minutes) == (5, 2.5)
    config = build_config(DEMO_TRAIN, *train_settings()[:-1])  # an API caller that predates the minutes box
    assert (config.save_steps, config.save_minutes) == (0, 10.0)  # auto: every 10 % of the steps, 10 minutes


def test_the_prepared_tokens_are_shown_reused_by_a_second_run_and_cleared(client, studio_home, tmp_path):
    """Start after Start on the same file tokenizes once; the page shows the cache and clears it."""
    import shutil

    data = tmp_path / "own-bytes.jsonl"
    shutil.copyfile(DEMO_TRAIN, data)
    with data.open("a") as handle:  # bytes no other test trains on: this test's own prepared set
        handle.write('{"prompt": "What is 1 + 1?", "response": "<think>\\n1 + 1 = 2.\\n</think>\\n\\n2"}\n')
    shown = client.predict(api_name="/prepared_cache")
    assert "Prepared tokens:" in shown and str(studio_home / "cache" / "prepared") in shown
    sets_before = int(re.search(r"(\d+) set", shown).group(1))
    for reused in (False, True):
        client.predict(str(data), *train_settings(max_steps=1), api_name="/start_training")
        result = wait_for(client, ["completed", "failed"])
        assert "completed" in result[0], result[0]
        assert ("tokens reused from the prepared cache" in result[0]) is reused, result[0]
    shown = client.predict(api_name="/prepared_cache")
    assert int(re.search(r"(\d+) set", shown).group(1)) == sets_before + 1
    cleared = client.predict(api_name="/clear_prepared_cache")
    assert "0 set(s), 0.0 MiB" in cleared
    assert not any((studio_home / "cache" / "prepared").iterdir())


def test_after_a_restart_the_status_names_the_newest_run_where_it_stopped_and_offers_the_chat(tmp_path, monkeypatch):
    from studio.runs import RunFolder
    from studio.ui import train_tab
    from studio.workspace import Workspace

    older, newest = RunFolder(tmp_path / "demo-lora-older"), RunFolder(tmp_path / "demo-lora-newest")
    for folder, started in ((older, 1.0), (newest, 2.0)):
        folder.write_config({"model": "demo", "method": "lora", "data": DEMO_TRAIN, "output": str(folder.path)})
        folder.write_status("stopped", started=started, step=3, max_steps=8,
                            message="Stopped at step 3; adapter saved — Resume continues from here.")
    newest.append_metrics({"step": 1, "loss": 0.75, "learning_rate": 2e-3, "tokens_per_s": 330.6, "time": 1.0})
    restarted = Workspace(runs_dir=tmp_path, separate_process=False)  # a studio just started: no job of its own
    monkeypatch.setattr(train_tab, "workspace", lambda: restarted)
    outputs = train_tab.refresh()
    status, loss, chat_button, chat_run = outputs[0], outputs[2], outputs[9], outputs[10]
    assert "Last run **demo-lora-newest** — stopped at step 3 of 8" in status, status
    assert "No run yet" not in status and "Resume" in status
    assert len(loss["value"]) == 1 and loss["y_lim"] == pytest.approx([0.0, 1.5])  # its loss, one point framed
    assert chat_button["visible"] is True and chat_run == "demo-lora-newest"
