"""The training job on the demo model: loss, adapter, metrics, stop/resume, failures, history, lock, CLI."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.config import PROJECT_ROOT, SAMPLES_DIR
from studio.runs import COMPLETED, FAILED, STOPPED, RunFolder, list_runs
from studio.train.job import JobBusy, TrainingJob, default_config

DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")


def config_for(folder, **overrides):
    return default_config(DEMO_TRAIN, str(folder), **{"max_steps": 8, "batch_size": 4, **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "finished"
    job = TrainingJob(config_for(folder, max_steps=12, learning_rate=3e-3))
    status = job.run()
    return job, status


def test_training_lowers_the_loss(finished_run):
    job, status = finished_run
    assert status["state"] == COMPLETED, status
    losses = [row["loss"] for row in job.metrics()]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def test_metrics_are_written_to_the_run_folder(finished_run):
    job, _ = finished_run
    rows = job.folder.read_metrics()
    assert rows == job.metrics()
    assert [row["step"] for row in rows] == list(range(1, 13))
    for row in rows:
        assert {"step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s"} <= set(row)
    # No rate after the first step alone (its one-time costs are not one); then the rate of the latest steps.
    assert rows[0]["eta_s"] is None and rows[1]["eta_s"] > 0 and rows[-1]["eta_s"] == 0
    assert all(row["tokens_per_s"] > 0 for row in rows[:-1])
    config = json.loads((job.folder.path / "config.json").read_text())
    assert config["learning_rate"] == 3e-3 and config["model"] == "demo"


def test_adapter_saves_in_peft_format_and_loads(finished_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    job, _ = finished_run
    adapter = job.folder.adapter_dir
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(resolve_model("demo"))
    model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_A" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("packing", [False, True])
def test_stop_keeps_an_adapter_and_resume_continues_the_count(tmp_path, packing):
    folder = tmp_path / "stop-resume"
    job = TrainingJob(config_for(folder, max_steps=40, packing=packing)).start()
    deadline = time.time() + 120
    while (not job.metrics() or job.metrics()[-1]["step"] < 2) and time.time() < deadline:
        time.sleep(0.1)
    job.stop()
    status = job.wait(120)
    assert status["state"] == STOPPED, status
    stopped_at = status["step"]
    assert 2 <= stopped_at < 40
    assert (job.folder.adapter_dir / "adapter_model.safetensors").exists()
    assert job.folder.latest_checkpoint().name == f"checkpoint-{stopped_at}"

    resumed = TrainingJob(config_for(folder, max_steps=stopped_at + 3, packing=packing), resume=True)
    status = resumed.run()
    assert status["state"] == COMPLETED, status
    steps = [row["step"] for row in RunFolder(folder).read_metrics()]
    assert steps == list(range(1, stopped_at + 4)), steps


def test_one_run_at_a_time(tmp_path):
    first = TrainingJob(config_for(tmp_path / "first", max_steps=30)).start()
    try:
        with pytest.raises(JobBusy, match="Another training run"):
            TrainingJob(config_for(tmp_path / "second")).start()
    finally:
        first.stop()
        first.wait(120)
    again = TrainingJob(config_for(tmp_path / "third", max_steps=1)).start()  # the lock was released
    assert again.wait(120)["state"] == COMPLETED


def test_injected_out_of_memory_is_reported_with_cause_and_fix(tmp_path, monkeypatch):
    import torch

    import studio.models

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(studio.models, "load_base_for_training", out_of_memory)
    job = TrainingJob(config_for(tmp_path / "oom"))
    status = job.run()
    assert status["state"] == FAILED
    assert "out of memory" in status["cause"] and "batch_size" in status["fix"] and "QLoRA" in status["fix"]
    assert RunFolder(tmp_path / "oom").read_status()["state"] == FAILED


def test_nan_loss_fails_the_run(tmp_path, monkeypatch):
    import studio.train.trainer

    original = studio.train.trainer.MetricsCallback.on_log

    def poisoned(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and state.global_step == 2:
            logs = {**logs, "loss": float("nan")}
        return original(self, args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(studio.train.trainer.MetricsCallback, "on_log", poisoned)
    status = TrainingJob(config_for(tmp_path / "nan")).run()
    assert status["state"] == FAILED and "nan" in status["cause"].lower() and "learning rate" in status["fix"]


def test_qlora_without_cuda_is_refused_with_the_reason(tmp_path):
    status = TrainingJob(config_for(tmp_path / "qlora", method="qlora")).run()
    assert status["state"] == FAILED and "CUDA" in status["cause"]


def test_bad_settings_are_refused_before_starting(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TrainingJob(config_for(tmp_path / "bad", batch_size=0))
    with pytest.raises(ValueError, match="pip install"):
        TrainingJob(config_for(tmp_path / "bad", report_to=["nonexistent-tracker"]))


def test_run_history_survives_a_restart(finished_run, tmp_path):
    job, _ = finished_run
    runs_dir = job.folder.path.parent
    # A run whose process died while "running" shows as interrupted, not running.
    ghost = RunFolder(runs_dir / "ghost")
    ghost.write_config({"model": "demo", "method": "lora"})
    ghost.write_status("running", started=time.time())
    status = json.loads((ghost.path / "status.json").read_text())
    status["pid"] = 999_999_999
    (ghost.path / "status.json").write_text(json.dumps(status))
    code = ("import json, sys; from studio.runs import list_runs; "
            "print(json.dumps(list_runs(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(runs_dir)], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True).stdout
    runs = {run["name"]: run for run in json.loads(out)}
    assert runs["finished"]["state"] == COMPLETED and runs["finished"]["has_adapter"]
    assert runs["finished"]["last_loss"] < runs["finished"]["first_loss"]
    assert runs["ghost"]["state"] == "interrupted"
    assert list_runs(tmp_path / "nothing-here") == []


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "studio", "train", *map(str, args)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, env=env, timeout=300)


def test_cli_trains_and_resumes(tmp_path):
    folder = tmp_path / "cli-run"
    process = run_cli("--data", SAMPLES_DIR / "broken-sample.jsonl", "--output", folder, "--max-steps", "2",
                      "--batch-size", "4", "--max-length", "256")
    assert process.returncode == 0, process.stderr
    from studio.data.validate import validate

    left_out = len(validate(str(SAMPLES_DIR / "broken-sample.jsonl"), lengths=False).error_rows)
    assert f"{left_out} left out" in process.stdout and "Finished 2 steps" in process.stdout
    assert (folder / "adapter" / "adapter_config.json").exists()
    assert "%" in process.stderr  # the progress bar with its ETA
    process = run_cli("--output", folder, "--resume")  # a completed run is not retrained
    assert process.returncode == 2 and "completed" in process.stderr
    process = run_cli("--output", folder / "not-a-run", "--resume")
    assert process.returncode == 2 and "not a run folder" in process.stderr


def test_cli_failures_exit_non_zero_with_the_cause(tmp_path):
    process = run_cli("--data", "nobody/no-such-dataset", "--output", tmp_path / "h", "--max-steps", "1")
    assert process.returncode == 1 and "HF_HUB_OFFLINE" in process.stderr  # a Hub id is read by the run itself
    assert "fix:" in process.stderr and json.loads((tmp_path / "h" / "status.json").read_text())["state"] == FAILED
    process = run_cli("--data", DEMO_TRAIN, "--output", tmp_path / "b", "--batch-size", "0")
    assert process.returncode == 2 and "batch_size" in process.stderr


@pytest.mark.parametrize("case", ["qlora on cpu", "will not fit", "a folder", "a missing file", "no valid row"])
def test_cli_refuses_what_cannot_run_before_making_the_output_folder(tmp_path, capsys, case):
    """The Train tab's refusals (the badge's reasons), as exit 2 before anything of the run is written."""
    import torch

    from studio.cli import main
    from studio.train.job import start_refusal
    from tests.helpers import huge_model, no_valid_rows

    args, words = ["--data", DEMO_TRAIN], None
    if case == "qlora on cpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        args, words = [*args, "--method", "qlora"], "QLoRA needs a CUDA GPU"
    elif case == "will not fit":
        args, words = [*args, "--model", str(huge_model(tmp_path / "huge"))], "it will not fit"
    elif case == "a folder":
        args, words = ["--data", str(tmp_path)], "is a folder"
    elif case == "a missing file":
        args, words = ["--data", str(tmp_path / "missing.jsonl")], "no such file"
    else:
        args, words = ["--data", str(no_valid_rows(tmp_path / "none.jsonl"))], "no row without errors"
    output = tmp_path / "run"
    assert main(["train", *args, "--output", str(output), "--max-steps", "1"]) == 2
    error = capsys.readouterr().err
    assert words in error and not output.exists()
    given = dict(zip(args[::2], args[1::2]))
    config = default_config(given["--data"], str(output), model=given.get("--model"), method=given.get("--method"))
    assert error.strip() == f"error: {start_refusal(config)}"  # the same words as the badge and Start


def test_cli_never_trains_over_a_run_without_resume(finished_run, capsys):
    from studio.cli import main
    from tests.helpers import snapshot

    folder = finished_run[0].folder.path
    before = snapshot(folder)
    assert main(["train", "--data", DEMO_TRAIN, "--output", str(folder), "--max-steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {folder} already holds a run: pass --resume to continue it, "
                                               "or another --output")
    assert snapshot(folder) == before


def test_stop_request_through_the_run_folder(tmp_path):
    """Another process (a ZeroGPU worker's page) stops a run by writing the marker in its folder."""
    from studio.workspace import Workspace

    job = TrainingJob(config_for(tmp_path / "runs" / "remote", max_steps=60)).start()
    deadline = time.time() + 120
    while (not job.metrics() or job.metrics()[-1]["step"] < 2) and time.time() < deadline:
        time.sleep(0.1)
    other_process = Workspace(tmp_path / "runs")  # holds no job: sees the run only on disk
    live = other_process.live()
    assert live["running"] and live["name"] == "remote" and live["metrics"]
    assert other_process.stop()
    status = job.wait(120)
    assert status["state"] == STOPPED and job.folder.latest_checkpoint() is not None
    assert not job.folder.stop_requested()  # the marker is cleared once the run has stopped
    assert not other_process.live()["running"] and not other_process.stop()


def test_auto_memory_settings_take_the_fastest_that_fits():
    from studio.models import Device
    from studio.train.job import TrainConfig, memory_settings

    config = TrainConfig(data="unused", output="unused", model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", lora_r=32,
                         max_length=4096, batch_size=1, liger=True)
    h200 = Device("cuda", "NVIDIA H200", 139.8, True)
    assert memory_settings(config, h200) == (False, False)  # fits without recompute
    assert memory_settings(config, Device("cuda", "NVIDIA GeForce RTX 4090", 23.99, True)) == (True, False)
    assert memory_settings(config, Device("cuda", "NVIDIA GeForce RTX 4090", 21.0, True)) == (True, True)
    config.gradient_checkpointing = True  # the user's choice stands; offload still follows the memory
    assert memory_settings(config, h200) == (True, False)
    config.offload_checkpoints = True
    assert memory_settings(config, h200) == (True, True)
    config.gradient_checkpointing = False
    assert memory_settings(config, h200) == (False, False)
    config.gradient_checkpointing, config.model = None, "/nowhere/model"  # shape unknown: the safe setting
    assert memory_settings(config, h200) == (True, True)
    assert memory_settings(config, Device("cpu", "CPU (2 cores)", 8.0, False)) == (False, False)


def test_cli_checkpointing_flag_is_recorded(tmp_path):
    import json

    out = tmp_path / "offloaded"
    result = subprocess.run([sys.executable, "-m", "studio", "train", "--data", str(SAMPLES_DIR / "demo-train.jsonl"),
                             "--output", str(out), "--max-steps", "2", "--checkpointing", "offload",
                             "--packing", "--save-steps", "1", "--save-minutes", "0.5"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["gradient_checkpointing"], config["offload_checkpoints"]) == (True, True)
    assert config["packing"] is True
    assert (config["save_steps"], config["save_minutes"]) == (1, 0.5)
    assert [path.name for path in RunFolder(out).checkpoints()] == ["checkpoint-1", "checkpoint-2"]
    status = json.loads((out / "status.json").read_text())
    assert status["gradient_checkpointing"] is True and status["offload_checkpoints"] is False  # CPU: nothing to move


@pytest.mark.parametrize("batch_size", [1, 4])
def test_token_count_read_on_the_host_matches_the_trainers_own(tmp_path, monkeypatch, batch_size):
    from transformers import Trainer

    from studio.train import trainer

    def tokens_seen(name):
        config = default_config(DEMO_TRAIN, str(tmp_path / name), max_steps=3, batch_size=batch_size)
        job = TrainingJob(config)
        assert job.run()["state"] == COMPLETED
        return job.metrics()[-1]["tokens_seen"]

    ours = tokens_seen("host")
    monkeypatch.setattr(trainer.StudioTrainer, "_track_num_input_tokens",
                        Trainer._track_num_input_tokens, raising=True)
    assert ours == tokens_seen("trainer") > 0


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_real_bases_pack_rows_by_tokens(tmp_path, method):
    config = default_config("data.jsonl", str(tmp_path), model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                            method=method)
    assert (config.batch_size, config.grad_accum, config.packing) == (1, 4, True)  # one pack a step, 4 an update


def test_the_demo_preset_does_not_pack_and_explicit_settings_win(tmp_path):
    assert default_config("data.jsonl", str(tmp_path), model="demo").packing is False  # the demo preset: 16 rows
    unpacked = default_config("data.jsonl", str(tmp_path), model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                              packing=False, batch_size=1)
    assert (unpacked.packing, unpacked.batch_size) == (False, 1)  # explicit settings win over the preset


def test_cli_packing_can_be_turned_off_and_on():
    from studio.cli import build_parser

    base = ["train", "--data", "d.jsonl", "--output", "o"]
    assert (build_parser().parse_args(base).save_steps, build_parser().parse_args(base).save_minutes) == (None, None)
    assert build_parser().parse_args(base).packing is None  # the preset decides
    assert build_parser().parse_args([*base, "--packing"]).packing is True
    assert build_parser().parse_args([*base, "--no-packing"]).packing is False


def test_lora_gets_gradients_through_checkpointed_frozen_layers():
    import torch
    from peft import LoraConfig, get_peft_model

    from studio.models import ALL_LINEAR, detect_device, load_base_for_training

    model = load_base_for_training("demo", "lora", detect_device(), gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR, task_type="CAUSAL_LM"))
    ids = torch.randint(0, 500, (1, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if "lora_B" in name]  # (A's is 0 while B starts at 0)
    assert len(grads) == 7 * model.config.num_hidden_layers and all(grad is not None for grad in grads)
    assert all(bool(grad.abs().sum()) for grad in grads)


@pytest.mark.parametrize("steps", [3, 5000])  # a short run, and one whose metrics file is far past 64 KiB
def test_history_reads_first_and_last_loss_from_the_file_ends(tmp_path, steps):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    (folder.path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": step, "loss": 10.0 - step / steps, "eval_loss": None, "note": "x" * 20}) + "\n"
                for step in range(1, steps + 1)) + '{"step": 9999, "lo',  # a last line cut short by a crash
        encoding="utf-8")
    assert folder.loss_endpoints() == (10.0 - 1 / steps, 9.0)
    assert RunFolder(tmp_path / "none").loss_endpoints() == (None, None)


def test_runs_started_within_one_second_get_folders_of_their_own(tmp_path, monkeypatch):
    from studio.workspace import Workspace

    monkeypatch.setattr(time, "strftime", lambda fmt: "20261128-120000")  # the same second, three times
    space = Workspace(tmp_path / "runs")
    names = []
    for _ in range(3):
        folder = space.new_run_folder("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "lora")
        folder.mkdir(parents=True)
        names.append(folder.name)
    assert names == ["DeepSeek-R1-Distill-Qwen-7B-lora-20261128-120000",
                     "DeepSeek-R1-Distill-Qwen-7B-lora-20261128-120000-2",
                     "DeepSeek-R1-Distill-Qwen-7B-lora-20261128-120000-3"]


def test_training_reads_the_data_with_the_mapping_it_is_given(tmp_path, demo_tokenizer):
    from studio.train.job import prepare_data

    rows = [{"Q": f"What is {n} + {n}?", "why": f"{n} + {n} = {2 * n}.", "final": f"The answer is {2 * n}."}
            for n in range(1, 6)]
    path = tmp_path / "custom.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    mapping = {"prompt": "Q", "reasoning": "why", "answer": "final"}
    data = prepare_data(default_config(str(path), str(tmp_path / "run"), mapping=mapping), demo_tokenizer)
    assert data.rows_read == 5 and data.rows_left_out == 0 and len(data.train) == 5
    text = demo_tokenizer.decode(data.train[0]["input_ids"])
    assert "</think>" in text and "+" in text
    with pytest.raises(ValueError, match="no row without errors"):
        prepare_data(default_config(str(path), str(tmp_path / "run2"), mapping={**mapping, "reasoning": "wy"}),
                     demo_tokenizer)


def test_cli_train_takes_the_field_mapping(tmp_path):
    rows = [{"Q": "What is 1 + 1?", "final": "<think>\n1 + 1 = 2.\n</think>\n\nThe answer is 2."}]
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    out = tmp_path / "mapped"
    result = subprocess.run([sys.executable, "-m", "studio", "train", "--data", str(path), "--output", str(out),
                             "--max-steps", "1", "--field", "prompt=Q", "--field", "answer=final"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["mapping"] == {"prompt": "Q", "answer": "final"}


def test_a_large_set_gets_an_eval_split_by_default_and_its_eval_loss_curve(tmp_path):
    from studio.train.job import EVAL_SPLIT_MIN_ROWS
    from studio.train.view import loss_frame

    rows = Path(DEMO_TRAIN).read_text(encoding="utf-8").splitlines()
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(rows * (EVAL_SPLIT_MIN_ROWS // len(rows) + 1)) + "\n", encoding="utf-8")
    job = TrainingJob(default_config(str(big), str(tmp_path / "run"), max_steps=4, batch_size=4))
    status = job.run()
    assert status["state"] == COMPLETED, status
    assert status["data"]["eval_rows"] > 0 and "auto" in status["data"]["eval_words"]
    evals = [row for row in job.metrics() if "eval_loss" in row]
    assert len(evals) >= 2  # a curve: an eval every tenth of the run, not once an epoch
    assert "eval loss" in set(loss_frame(job.metrics())["series"])
