"""The Train tab through gradio_client: start, live status, one run at a time, stop, history."""

import time

import pytest

from studio.config import SAMPLES_DIR
from tests.helpers import train_settings

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
    assert len(loss["data"]) == 8  # one loss point per step
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
    from studio.train.estimate import STATED_ERROR

    shown = client.predict(api_name="/estimate")
    assert "fits" in shown
    assert "no gradient checkpointing" in shown and STATED_ERROR in shown  # CPU: what auto chose, and the error


def test_bad_dataset_is_a_message(client, tmp_path):
    with pytest.raises(Exception, match="Choose a dataset"):
        client.predict("", *train_settings(), api_name="/start_training")
    client.predict(str(tmp_path / "missing.jsonl"), *train_settings(), api_name="/start_training")
    result = wait_for(client, ["failed", "completed"])
    assert "no such file" in result[0]


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
