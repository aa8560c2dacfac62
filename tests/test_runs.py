"""Crash safety of a run folder: checkpoints on schedule, resume from the newest complete checkpoint, metrics
each step once, liveness by the run's lock, `studio runs`, and kill -9 at random moments then --resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from studio.config import PROJECT_ROOT, SAMPLES_DIR
from studio.runs import (COMPLETED, INTERRUPTED, RUNNING, RunFolder, RunLocked, checkpoint_problem, find_running,
                         list_runs)
from studio.train.job import JobBusy, ResumeRefused, TrainConfig, TrainingJob, default_config

DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")


def config_for(folder, **overrides):
    return default_config(DEMO_TRAIN, str(folder), **{"max_steps": 6, "batch_size": 4, "max_length": 128,
                                                       **overrides})


class SaveRecorder(TrainerCallback):
    def __init__(self):
        self.saved = []

    def on_save(self, args, state, control, **kwargs):
        self.saved.append(state.global_step)


def steps_logged(folder) -> list[int]:
    return [row["step"] for row in RunFolder(folder).read_metrics() if "loss" in row]


def crashed_copy(source: Path, target: Path) -> RunFolder:
    """A copy of a finished run as a kill -9 after its last checkpoint would leave it: status still running
    (with a pid that is alive: this one), no final adapter, no lock held."""
    shutil.copytree(source, target)
    run = RunFolder(target)
    status = run.read_status()
    status.update(state=RUNNING, pid=os.getpid(), message="Training")
    (target / "status.json").write_text(json.dumps(status))
    shutil.rmtree(run.adapter_dir)
    return run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed 6-step run with a checkpoint every 2 steps: checkpoint-2, -4 and -6 (the newest 3 kept)."""
    folder = tmp_path_factory.mktemp("runs") / "finished"
    status = TrainingJob(config_for(folder, save_steps=2)).run()
    assert status["state"] == COMPLETED, status
    return folder


def resume(run: RunFolder) -> dict:
    return TrainingJob(TrainConfig.from_json({**run.read_config(), "output": str(run.path)}), resume=True).run()


def snapshot(folder: Path) -> dict:
    return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in [folder, *folder.rglob("*")]}


# checkpoints on schedule ---------------------------------------------------------------------------------------

def test_default_checkpoints_every_ten_percent_and_keep_the_newest_three(tmp_path):
    recorder = SaveRecorder()
    config = config_for(tmp_path / "auto", max_steps=20)
    assert (config.save_steps, config.save_minutes, config.save_total_limit) == (0, 10.0, 3)
    assert TrainingJob(config, callbacks=[recorder]).run()["state"] == COMPLETED
    assert recorder.saved == list(range(2, 21, 2))  # every 10 % of 20 steps
    run = RunFolder(tmp_path / "auto")
    assert [p.name for p in run.checkpoints()] == ["checkpoint-16", "checkpoint-18", "checkpoint-20"]
    assert all(checkpoint_problem(p) is None for p in run.checkpoints())


def test_a_time_limit_saves_between_the_step_intervals(tmp_path):
    recorder = SaveRecorder()
    config = config_for(tmp_path / "timed", max_steps=5, save_steps=1000, save_minutes=1e-5)  # 0.6 ms
    assert TrainingJob(config, callbacks=[recorder]).run()["state"] == COMPLETED
    assert recorder.saved == [1, 2, 3, 4, 5]  # the clock ran out on every step; never on the step count
    assert len(RunFolder(tmp_path / "timed").checkpoints()) == 3


def test_bad_save_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="save_steps and save_minutes"):
        TrainingJob(config_for(tmp_path / "bad", save_minutes=-1))
    with pytest.raises(ValueError, match="save_total_limit"):
        TrainingJob(config_for(tmp_path / "bad", save_total_limit=0))


def test_a_checkpoint_with_any_part_cut_or_missing_is_incomplete(finished, tmp_path):
    source = finished / "checkpoint-6"
    assert checkpoint_problem(source) is None
    for part in ("trainer_state.json", "adapter_model.safetensors", "adapter_config.json", "optimizer.pt",
                 "scheduler.pt", "rng_state.pth"):
        for damage in ("cut", "missing"):
            copy = tmp_path / f"{part}-{damage}" / "checkpoint-6"
            shutil.copytree(source, copy)
            if damage == "cut":
                data = (copy / part).read_bytes()
                (copy / part).write_bytes(data[: len(data) // 2])
            else:
                (copy / part).unlink()
            problem = checkpoint_problem(copy)
            assert problem and (part in problem or problem in ("no adapter weights", "no RNG state")), (part, problem)


def test_pruning_never_deletes_the_only_complete_checkpoint(finished, tmp_path):
    run = RunFolder(tmp_path / "run")
    for step in (2, 4, 6):
        shutil.copytree(finished / "checkpoint-6", run.path / f"checkpoint-{step}")
    for step in (4, 6):  # the newer two cut (a crash while writing, a crash while deleting)
        (run.path / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_st')
    assert run.prune_checkpoints(keep=1) == []
    assert run.latest_checkpoint().name == "checkpoint-2"
    (run.path / "checkpoint-4" / "trainer_state.json").write_bytes(
        (finished / "checkpoint-4" / "trainer_state.json").read_bytes())
    assert run.prune_checkpoints(keep=1) == ["checkpoint-2"]
    assert not list(run.path.glob(".deleting-*"))
    assert [p.name for p in run.checkpoints()] == ["checkpoint-4", "checkpoint-6"]


# resume ----------------------------------------------------------------------------------------------------------

def test_a_cut_trainer_state_in_the_newest_checkpoint_falls_back_to_the_older_one(finished, tmp_path):
    run = crashed_copy(finished, tmp_path / "cut")
    state = run.path / "checkpoint-6" / "trainer_state.json"
    state.write_text(state.read_text()[:200])  # the kill came while the Trainer wrote it
    with open(run.path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "epoch": 0.4, "lo')  # and a metrics line cut by a crash
    before = {row["step"]: row for row in run.read_metrics()}
    assert run.latest_checkpoint().name == "checkpoint-4"
    assert list_runs(run.path.parent)[0]["state"] == INTERRUPTED

    status = resume(run)
    assert status["state"] == COMPLETED and status["step"] == 6, status
    assert status["resumed_from"] == "checkpoint-4"
    assert "resumed from checkpoint-4" in status["message"]
    assert "checkpoint-6: trainer_state.json is cut" in status["message"], status["message"]
    assert checkpoint_problem(run.path / "checkpoint-6") is None  # written again, whole
    assert steps_logged(run.path) == [1, 2, 3, 4, 5, 6]  # steps 5 and 6 redone, each once
    rows = {row["step"]: row for row in run.read_metrics()}
    assert rows[4] == before[4] and rows[5]["time"] > before[6]["time"]
    assert rows[4]["elapsed_s"] <= rows[5]["elapsed_s"] <= rows[6]["elapsed_s"]  # elapsed goes on, not from 0
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    assert not (run.path / "metrics.jsonl").read_text().count("\n\n")


def test_no_complete_checkpoint_trains_again_from_step_zero(finished, tmp_path):
    run = crashed_copy(finished, tmp_path / "early")
    for checkpoint in run.checkpoints():
        (checkpoint / "optimizer.pt").unlink()  # a kill in the middle of each save
    status = resume(run)
    assert status["state"] == COMPLETED and status["step"] == 6, status
    assert "no complete checkpoint" in status["message"] and "from step 0" in status["message"]
    assert steps_logged(run.path) == [1, 2, 3, 4, 5, 6]


def test_a_resume_at_max_steps_ends_at_once(finished, tmp_path):
    run = crashed_copy(finished, tmp_path / "at-end")  # killed after the final checkpoint, before the adapter
    metrics = (run.path / "metrics.jsonl").read_text()
    status = resume(run)
    assert status["state"] == COMPLETED and status["step"] == 6, status
    assert "nothing left to train" in status["message"]
    assert (run.path / "metrics.jsonl").read_text() == metrics  # not one step more (no 7 of 6)
    assert [p.name for p in run.checkpoints()][-1] == "checkpoint-6"
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_resuming_a_completed_run_is_refused_and_touches_nothing(finished):
    from studio.train import job as job_module
    from studio.workspace import Workspace

    before = snapshot(finished)
    time.sleep(0.01)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.run([sys.executable, "-m", "studio", "train", "--output", str(finished), "--resume"],
                             capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
    assert process.returncode == 2, process.stderr
    assert "completed" in process.stderr and "overwrite" in process.stderr
    config = TrainConfig.from_json(RunFolder(finished).read_config())
    with pytest.raises(ResumeRefused, match="completed"):
        TrainingJob(config, resume=True).run()
    with pytest.raises(ResumeRefused, match="completed"):
        TrainingJob(config, resume=True).start()
    assert not job_module._ONE_RUN.locked()  # a refused start gives the trainer back
    with pytest.raises(ResumeRefused, match="completed"):
        Workspace(finished.parent).resume(finished.name)
    assert "completed" in Workspace(finished.parent).resume_refusal(finished.name)
    assert snapshot(finished) == before


# liveness ------------------------------------------------------------------------------------------------------

LOCKER = ("import sys, time; from studio.runs import RunFolder; lock = RunFolder(sys.argv[1]).acquire(); "
          "print('locked', flush=True); time.sleep(120)")


def test_a_stale_pid_without_the_lock_reads_interrupted_and_a_held_lock_running(tmp_path):
    from studio.workspace import Workspace

    runs_dir = tmp_path / "runs"
    ghost = RunFolder(runs_dir / "ghost")
    ghost.write_config(config_for(ghost.path).to_json())
    ghost.write_status(RUNNING, started=time.time(), step=3, max_steps=6)
    assert ghost.read_status()["pid"] == os.getpid()  # a pid that exists: the app's own, after a restart
    space = Workspace(runs_dir)
    [run] = list_runs(runs_dir)
    assert run["state"] == INTERRUPTED and run["resumable"]
    assert find_running(runs_dir) is None and not space.live()["running"] and not space.stop()
    assert ghost.resume_refusal() is None

    # Another process trains it: running, whatever the pid says; not resumable; one training at a time.
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(ghost.path)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        [run] = list_runs(runs_dir)
        assert run["state"] == RUNNING and not run["resumable"]
        assert find_running(runs_dir).name == "ghost" and space.live()["running"]
        assert "training now" in ghost.resume_refusal()
        with pytest.raises(ResumeRefused, match="training now"):
            space.resume("ghost")
        with pytest.raises(JobBusy, match="Another training run is going"):
            space.start(config_for(runs_dir / "new"))
        with pytest.raises(RunLocked, match="another process"):
            ghost.acquire(timeout=0.2)
    finally:
        locker.send_signal(signal.SIGKILL)  # the OS drops the lock with the process
        locker.wait()
    assert list_runs(runs_dir)[0]["state"] == INTERRUPTED and find_running(runs_dir) is None
    lock = ghost.acquire(timeout=0.5)
    assert ghost.is_locked()
    lock.release()
    assert not ghost.is_locked()


def test_runs_are_kept_per_owner_on_a_shared_server(tmp_path, monkeypatch):
    """Workspace with an owner token (a shared server's browser session): its own runs only, by name, under a
    name nobody can guess; another's run answered as none; one run at a time, unnamed to the others; no owner
    (the studio's own machine): every run, as before."""
    import re

    from studio.chat.generate import resolve_adapter
    from studio.runs import STOPPED
    from studio.workspace import BUSY_FOR_VISITORS, SHARED_ADAPTER_RULE, Workspace

    runs_dir = tmp_path / "runs"
    space = Workspace(runs_dir)
    a, b = "a" * 32, "b" * 32
    mine = RunFolder(space.new_run_folder("demo", "lora", a))
    assert re.fullmatch(r"demo-lora-\d{8}-\d{6}-[\w-]{16}", mine.name), mine.name
    assert space.new_run_folder("demo", "lora", a).name != mine.name  # the random part
    assert re.fullmatch(r"demo-lora-\d{8}-\d{6}", space.new_run_folder("demo", "lora").name)  # locally as before
    local = RunFolder(runs_dir / "local-run")  # started where nobody owns runs (or by the CLI)
    for run, owner in ((mine, a), (local, None)):
        run.write_status(STOPPED, started=time.time(), step=2, max_steps=6, **({"owner": owner} if owner else {}))
        run.write_config(config_for(run.path).to_json())
        run.adapter_dir.mkdir()
        (run.adapter_dir / "adapter_config.json").write_text("{}")

    assert {run["name"] for run in space.history()} == {mine.name, local.name}  # no owner: every run
    assert sorted(value for _, value in space.adapters()) == sorted([mine.name, local.name])  # names, not paths
    assert [run["name"] for run in space.history(a)] == [mine.name] and space.history(b) == []
    assert [value for _, value in space.adapters(a)] == [mine.name] and space.adapters(b) == []
    assert space.adapter_source(mine.name, a) == space.adapter_source(mine.name) == str(mine.path)
    assert space.adapter_source(mine.name, b) == mine.name  # not B's: left as typed, a folder the server refuses
    assert space.adapter_source(str(mine.adapter_dir), a) == str(mine.adapter_dir)
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    with pytest.raises(ValueError) as outside:
        resolve_adapter(mine.name)
    assert str(outside.value) == SHARED_ADAPTER_RULE  # resolve_adapter's own words for a folder it does not read
    for typed in (mine.path, mine.adapter_dir, mine.path / "checkpoint-2", runs_dir, runs_dir / "guess",
                  runs_dir / local.name, runs_dir / "x" / ".." / mine.name):
        with pytest.raises(ValueError) as error:
            space.adapter_source(str(typed), b)
        assert str(error.value) == SHARED_ADAPTER_RULE, typed
    answers = set()
    for name in (mine.name, "no-such-run"):
        with pytest.raises(ValueError, match="No run named") as error:
            space.resume_refusal(name, b)
        answers.add(str(error.value).replace(name, "NAME"))
    assert answers == {"No run named 'NAME'."}  # the same for A's run as for none, and no server path
    assert space.resume_refusal(mine.name, a) is None

    # A's run trains (its lock held, as by another process: a ZeroGPU worker).
    mine.write_status(RUNNING, step=3)
    lock = mine.acquire()
    try:
        live = space.live(a)
        assert live["running"] and live["name"] == mine.name and not live["busy"]
        live = space.live(b)
        assert not live["running"] and live["busy"] and live["name"] is None and live["status"] == {}
        assert space.live()["name"] == mine.name  # the studio's own machine: everyone follows it
        with pytest.raises(JobBusy) as busy:
            space.start(config_for(runs_dir / "b-run"), b)
        assert str(busy.value) == BUSY_FOR_VISITORS and not (runs_dir / "b-run").exists()
        with pytest.raises(JobBusy, match=mine.name):  # to its owner the run is named
            space.start(config_for(runs_dir / "a-run"), a)
        assert not space.stop(b) and not mine.stop_requested()  # B's Stop does not stop A's run
        assert space.stop(a) and mine.stop_requested()
    finally:
        lock.release()
        mine.clear_stop_request()


def test_metrics_never_glue_onto_a_line_cut_by_a_crash(tmp_path):
    run = RunFolder(tmp_path)
    run.append_metrics({"step": 1, "loss": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 2, "lo')
    run.append_metrics({"step": 2, "loss": 0.9})
    assert [row["step"] for row in run.read_metrics()] == [1, 2]
    assert run.rewrite_metrics(1) == [{"step": 1, "loss": 1.0}]
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


# studio runs ---------------------------------------------------------------------------------------------------

def test_runs_command_lists_state_step_loss_adapter_and_resumable(finished, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(finished, home / "runs" / "done")
    crashed_copy(finished, home / "runs" / "crashed")
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "elsewhere")}

    def runs(*args):
        return subprocess.run([sys.executable, "-m", "studio", "runs", *args], capture_output=True, text=True,
                              cwd=PROJECT_ROOT, env=env, timeout=120)

    process = runs("--json", "--home", str(home))
    assert process.returncode == 0, process.stderr
    listed = {run["name"]: run for run in json.loads(process.stdout)}
    assert listed["done"]["state"] == COMPLETED and listed["done"]["has_adapter"] and not listed["done"]["resumable"]
    assert listed["crashed"]["state"] == INTERRUPTED and listed["crashed"]["resumable"]
    assert not listed["crashed"]["has_adapter"] and listed["crashed"]["checkpoint"] == "checkpoint-6"
    for run in listed.values():
        assert run["step"] == run["max_steps"] == 6 and 0 < run["last_loss"] < 10
    assert {run["name"] for run in json.loads(runs("--json", "--home", str(home / "runs")).stdout)} == set(listed)
    text = runs("--home", str(home)).stdout
    assert "crashed" in text and "interrupted" in text and "6/6" in text
    assert "no runs in" in runs().stdout  # STUDIO_HOME's runs folder, empty
    missing = runs("--home", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr


# kill -9 at random moments -----------------------------------------------------------------------------------

def test_kill_minus_nine_at_random_moments_then_resume(tmp_path):
    """`python -m studio train` killed with SIGKILL at random moments of set-up, training (often mid-checkpoint)
    and wrap-up, then `train --resume`: every resume ends at max_steps with each step logged once.
    studio/benchmarks/kill_resume.py runs more trials of the same code."""
    from studio.benchmarks.kill_resume import resume_in_process, run_trials

    trials = run_trials(6, max_steps=20, seed=int(time.time()), parallel=2, workdir=str(tmp_path),
                        resume=resume_in_process)
    failures = [(Path(t.folder).name, t.phase, t.killed_after_step, t.resumed_from, t.problems)
                for t in trials if not t.ok]
    assert not failures, failures
    assert sum(t.killed for t in trials) >= 4  # most kills came while the run was going
