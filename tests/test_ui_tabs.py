"""The page around the tabs: Spaces front-matter and banner, launch settings, STUDIO_AUTH, ZeroGPU wiring,
errors as toasts, hover help and the Chat tab's empty state. Plain pytest: no server, no browser."""

import os
import re
import subprocess
import sys

import gradio as gr
import pytest

from studio import spaces
from studio.config import PROJECT_ROOT, SAMPLES_DIR, STUDIO_HOME
from studio.ui import app as studio_app
from studio.ui import chat_tab, layout, train_tab
from tests.helpers import train_settings, run_async

README = PROJECT_ROOT / "README.md"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"


def front_matter() -> dict:
    text = README.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "the Spaces front-matter must open README.md"
    block = text[4:text.index("\n---\n", 4)]
    return dict(line.split(": ", 1) for line in block.splitlines())


def components(app: gr.Blocks) -> dict:
    return {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def test_front_matter_sdk_version_is_the_gradio_pin():
    pin = re.search(r"^gradio==(\S+)$", REQUIREMENTS.read_text(encoding="utf-8"), re.M).group(1)
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pin
    assert (PROJECT_ROOT / meta["app_file"]).is_file()
    assert meta["title"] == "R1 LoRA Studio" and meta["emoji"] == "🧠"
    assert meta["python_version"] == '"3.12"' and meta["pinned"] == "false"
    assert (meta["colorFrom"], meta["colorTo"]) == ("indigo", "gray")


def test_readme_shows_one_screenshot_per_tab():
    text = README.read_text(encoding="utf-8")
    head = text[:text.index("## Two commands")]
    for name in ("data-tab.png", "train-tab.png", "chat-tab.png"):
        assert f"assets/screenshots/{name}" in head
        assert (PROJECT_ROOT / "assets" / "screenshots" / name).is_file(), name


def test_launch_settings(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    settings = studio_app.launch_settings()
    assert settings["ssr_mode"] is False and settings["show_error"] is True
    assert settings["allowed_paths"] == [str(SAMPLES_DIR), str(STUDIO_HOME)]
    assert settings["max_file_size"] == "1gb" and "auth" not in settings
    monkeypatch.setenv("SPACE_ID", "someone/r1-lora-studio")
    assert studio_app.launch_settings()["max_file_size"] == f"{spaces.SPACE_MAX_UPLOAD_MB}mb"


def test_launch_settings_on_a_shared_server(monkeypatch):
    """STUDIO_MULTIUSER=1 (or a Space): no folder of the studio's home is served, only the samples; what a session
    makes reaches it through Gradio's per-file cache. Uploads and downloads age out; page state is bounded."""
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    settings = studio_app.launch_settings()
    assert settings["allowed_paths"] == [str(SAMPLES_DIR)]
    assert settings["max_file_size"] == f"{spaces.SPACE_MAX_UPLOAD_MB}mb"
    assert settings["state_session_capacity"] <= 64
    assert studio_app.build_app().delete_cache == (600, 7200)
    monkeypatch.setenv("STUDIO_FILE_TTL_S", "900")
    assert studio_app.build_app().delete_cache == (600, 900)
    monkeypatch.delenv("STUDIO_MULTIUSER")
    monkeypatch.delenv("STUDIO_FILE_TTL_S")
    assert studio_app.build_app().delete_cache == (600, 86400)  # locally uploads are kept a day


def test_queue_is_on():
    assert studio_app.build_app()._queue is not None


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None),
    ("ana:secret", ("ana", "secret")),
    ("ana:pa:ss:word", ("ana", "pa:ss:word")),  # only the first colon splits
])
def test_studio_auth_parsing(value, expected):
    assert spaces.parse_auth(value) == expected


@pytest.mark.parametrize("value, reason", [
    ("anasecret", "no ':'"), (":secret", "user name"), ("ana smith:secret", "user name"), ("ana:", "password"),
])
def test_malformed_studio_auth_says_why(value, reason):
    with pytest.raises(ValueError, match=reason) as error:
        spaces.parse_auth(value)
    assert "secret" not in str(error.value)  # never echo the password


def test_studio_auth_turns_the_login_on(monkeypatch):
    import asyncio

    monkeypatch.setenv("STUDIO_AUTH", "ana:secret")
    auth = studio_app.launch_settings()["auth"]
    assert asyncio.iscoroutinefunction(auth)  # awaited by Gradio: a slowed try never blocks the server
    assert run_async(auth("ana", "secret")) is True
    assert run_async(auth("ana", "wrong")) is False and run_async(auth("bob", "secret")) is False


@pytest.mark.parametrize("variable, value, named", [
    ("STUDIO_AUTH", "no-colon-here", "STUDIO_AUTH must look like user:password"),
    ("STUDIO_ZERO_GPU_CHAT_S", "2m", "STUDIO_ZERO_GPU_CHAT_S must be a whole number of seconds"),
    ("STUDIO_MAX_REPORTS", "lots", "STUDIO_MAX_REPORTS must be a whole number"),
])
def test_a_malformed_setting_stops_the_start_up_with_its_name(variable, value, named):
    env = {**os.environ, variable: value}
    result = subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "cannot start" in result.stderr and named in result.stderr
    assert "Traceback" not in result.stderr


def test_space_banner_states_the_limits(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/r1-lora-studio")
    banner = components(studio_app.build_app()).get("space-banner")
    assert banner is not None, "no banner on a Space"
    text = banner.value
    assert "someone/r1-lora-studio" in text
    assert "only the demo model is practical" in text  # a CPU Space (this machine has no GPU)
    assert "lost when the Space restarts" in text and "persistent storage" in text
    assert "One training run at a time" in text
    assert f"capped at {spaces.SPACE_MAX_UPLOAD_MB} MB" in text
    assert "Your files are yours" in text and "deleted after 2 hours" in text


def test_no_banner_off_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert "space-banner" not in components(studio_app.build_app())


def test_gpu_is_a_no_op_off_zero_gpu():
    def work():
        return 42

    assert spaces.on_zero_gpu() is False
    assert spaces.gpu(duration=5)(work) is work and work() == 42
    # Every handler that runs the model would get a GPU on ZeroGPU.
    for handler in (train_tab.train_in_foreground, chat_tab.send, chat_tab.batch_compare, chat_tab.merge):
        assert getattr(handler, "gpu_duration", None), handler.__name__


def test_zero_gpu_start_trains_in_the_foreground(monkeypatch):
    """On ZeroGPU Start streams the run from inside the @gpu call; here the no-op stands in for spaces.GPU."""
    monkeypatch.setattr(spaces, "on_zero_gpu", lambda: True)
    calls = []
    foreground = train_tab.train_in_foreground
    monkeypatch.setattr(train_tab, "train_in_foreground", lambda **kwargs: calls.append(kwargs) or foreground(**kwargs))
    settings = train_settings(batch_size=8)
    updates = list(train_tab.start(str(SAMPLES_DIR / "demo-train.jsonl"), *settings))
    assert len(calls) == 1 and calls[0]["config"].max_steps == 6
    assert len(updates) >= 2  # it streamed while training
    (status, progress, loss), (timer, start_button, stop_button) = updates[-1][:3], updates[-1][6:9]
    assert "completed" in status, status
    assert "step 6 / 6" in progress and len(loss["value"]) == 6
    assert all(update[6]["active"] is False for update in updates)  # the page's timer stays off
    assert start_button["interactive"] is True and stop_button["interactive"] is False


def test_every_handler_turns_errors_into_toasts():
    app = studio_app.build_app()
    bare = [f"{block_fn.name}" for block_fn in app.fns.values()
            if block_fn.fn is not None and not getattr(block_fn.fn, "user_errors", False)
            and not block_fn.fn.__module__.startswith("gradio")]
    assert not bare, f"handlers that could show a stack trace: {bare}"


def test_an_unexpected_error_is_a_toast_without_a_trace():
    @layout.user_errors
    def broken():
        return {}["missing"]

    with pytest.raises(gr.Error) as error:
        broken()
    message = error.value.message
    assert "KeyError" in message and "What to do" in message
    assert "Traceback" not in message and 'File "' not in message


def test_a_streaming_handler_error_is_a_toast():
    @layout.user_errors
    def streaming():
        yield 1
        raise ValueError("max_length must be at least 1")

    with pytest.raises(gr.Error, match="max_length must be at least 1"):
        list(streaming())


def test_hyper_parameters_have_hover_help():
    blocks = components(studio_app.build_app())
    train = [block for name, block in blocks.items() if name.startswith("train-")
             and isinstance(block, (gr.Number, gr.Radio, gr.Dropdown, gr.Slider, gr.CheckboxGroup, gr.Textbox))
             and name != "train-selected-run"]
    assert len(train) >= 18
    assert not [block.elem_id for block in train if not block.info], "hyper-parameters without hover help"
    assert "1e-4" in blocks["train-lr"].info and "2e-4" in blocks["train-lr"].info
    assert "4096" in blocks["train-max-length"].info
    assert "bf16" in blocks["train-method"].info and "fp16" in blocks["train-method"].info
    assert "0.6" in blocks["chat-temperature"].info
    assert "4096" in blocks["data-max-length"].info


def test_fits_badge_sits_next_to_start():
    blocks = components(studio_app.build_app())
    estimate, start = blocks["train-estimate"], blocks["train-start"]
    row = estimate.parent
    assert isinstance(row, gr.Row) and start.parent.parent is row


def test_chat_says_train_first_when_there_is_no_run(monkeypatch):
    from studio.workspace import workspace

    monkeypatch.setattr(workspace(), "adapters", lambda: [])
    dropdown, empty = chat_tab.adapter_choices(None)
    assert empty["visible"] is True and dropdown["value"] is None
    assert "Train a run first" in chat_tab.EMPTY_STATE and "Train" in chat_tab.EMPTY_STATE
    monkeypatch.setattr(workspace(), "adapters", lambda: [("run-b (completed, demo)", "/runs/b"),
                                                          ("run-a (completed, demo)", "/runs/a")])
    dropdown, empty = chat_tab.adapter_choices(None)
    assert empty["visible"] is False and dropdown["value"] == "/runs/b"  # the newest run, picked for you
    assert chat_tab.adapter_choices("/runs/a")[0]["value"] == "/runs/a"  # a choice made stays


def test_every_control_is_labelled():
    app = studio_app.build_app()
    unlabelled = [block.elem_id for block in app.blocks.values()
                  if isinstance(block, gr.components.FormComponent) and not isinstance(block, gr.State)
                  and not getattr(block, "label", None)]
    assert not unlabelled, unlabelled


def test_typed_paths_are_off_on_a_space(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "someone/r1-lora-studio")
    uploads = tmp_path / "uploads"
    assert spaces.path_allowed_on_space(str(SAMPLES_DIR / "demo-train.jsonl"), uploads)
    assert spaces.path_allowed_on_space(str(uploads / "abc" / "mine.jsonl"), uploads)
    assert spaces.path_allowed_on_space(str(STUDIO_HOME / "datasets" / "clean.jsonl"), uploads)
    assert not spaces.path_allowed_on_space("/etc/passwd", uploads)
    assert not spaces.path_allowed_on_space(str(SAMPLES_DIR / ".." / ".." / "README.md"), uploads)
    with pytest.raises(gr.Error, match="typed file paths are off"):
        list(train_tab.start("/etc/passwd", *(["demo"] + [None] * 18)))
    monkeypatch.delenv("SPACE_ID")
    assert spaces.path_allowed_on_space("/etc/passwd", uploads)


def stop_cancels(app: gr.Blocks) -> set:
    """Names of the handlers the Train tab's Stop button cancels."""
    stop_id = components(app)["train-stop"]._id
    cancelled = set()
    for dependency in app.get_config_file()["dependencies"]:
        if any(target[0] == stop_id for target in dependency["targets"]):
            cancelled |= {app.fns[index].fn.__name__ for index in dependency.get("cancels") or []}
    return cancelled


def test_stop_never_cancels_a_run_it_can_stop_gracefully(monkeypatch):
    # Stop saves a checkpoint and stops; on ZeroGPU it reaches the GPU worker through the run folder.
    assert stop_cancels(studio_app.build_app()) == set()
    monkeypatch.setattr(spaces, "on_zero_gpu", lambda: True)
    assert stop_cancels(studio_app.build_app()) == set()


def test_an_expected_error_is_one_line_in_the_terminal(caplog):
    @layout.user_errors
    def check():
        raise gr.Error("Choose a file to check: upload one, pick a sample, or type a Hub dataset id.")

    @layout.user_errors
    def apply():
        raise ValueError("max_length is empty: enter a number.")

    for handler, text in ((check, "Choose a file to check"), (apply, "max_length is empty")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="studio.ui"), pytest.raises(gr.Error) as error:
            handler()
        assert error.value.print_exception is False  # Gradio prints no traceback for it
        [record] = caplog.records
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert record.getMessage().startswith(f"{handler.__name__}: {text}")


def test_an_unexpected_error_keeps_its_traceback_once(caplog):
    @layout.user_errors
    def broken():
        return {}["missing"]

    with caplog.at_level("WARNING", logger="studio.ui"), pytest.raises(gr.Error) as error:
        broken()
    assert error.value.print_exception is False  # logged here with the traceback; Gradio would print it twice
    [record] = caplog.records
    assert record.exc_info is not None and "broken" in record.getMessage()
