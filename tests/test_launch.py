"""Runs started from the page train in a process of their own (studio.train.launch), followed through the folder."""

import os
import signal
import threading

import pytest

from studio.config import SAMPLES_DIR
from studio.runs import FAILED, RUNNING, STOPPED, RunFolder, find_running, list_runs
from studio.train.job import JobBusy, default_config
from studio.train.launch import LOG_FILE, training_threads
from studio.workspace import ONE_RUN_AT_A_TIME, Workspace
from tests.helpers import wait_for

DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")


def config_for(space: Workspace, **overrides):
    return default_config(data=DEMO_TRAIN, output=str(space.new_run_folder("demo", "lora")), model="demo",
                          **{"max_steps": 400, **overrides})


def test_one_core_is_left_to_the_server():
    assert [training_threads(cores) for cores in (1, 2, 16)] == [1, 1, 15]


def test_a_page_run_trains_in_its_own_process_running_from_start_and_stops_gracefully(tmp_path):
    space = Workspace(tmp_path / "runs", separate_process=True)
    job = space.start(config_for(space))
    try:
        # Running (its lock held, listed, Start refused) from the moment Start returns, before the child has
        # imported anything.
        assert job.running and find_running(space.runs_dir).name == job.folder.name
        [run] = list_runs(space.runs_dir)
        assert run["state"] == RUNNING and not run["resumable"]
        with pytest.raises(JobBusy, match=ONE_RUN_AT_A_TIME):
            space.start(config_for(space))
        wait_for(lambda: job.metrics(), 120, "a first step", every=0.1)
        assert job.status["pid"] == job.process.pid != os.getpid()  # trained by the child, not this process
        # Another process (a restarted server) sees it training through the folder alone, and can stop it.
        restarted = Workspace(space.runs_dir, separate_process=True)
        live = restarted.live()
        assert live["running"] and live["name"] == job.folder.name and live["metrics"]
        assert restarted.stop()
        status = job.wait(120)
    finally:
        job.stop()
        job.wait(120)
    assert status["state"] == STOPPED and job.folder.latest_checkpoint() is not None
    assert not job.running and find_running(space.runs_dir) is None
    assert "Stopped at step" in (job.folder.path / LOG_FILE).read_text()
    resumed = space.resume(job.folder.name, max_steps=status["step"] + 2)
    assert resumed.wait(120)["state"] == "completed"
    steps = [row["step"] for row in resumed.metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == status["step"] + 2  # each step once, resumed to the end


def test_a_killed_training_process_reads_failed_with_why_and_stays_resumable(tmp_path):
    space = Workspace(tmp_path / "runs", separate_process=True)
    job = space.start(config_for(space))
    wait_for(lambda: job.metrics(), 120, "a first step", every=0.1)
    os.kill(job.process.pid, signal.SIGKILL)
    status = job.wait(60)
    assert status["state"] == FAILED and "killed by signal 9" in status["message"]
    assert LOG_FILE in status["fix"] and not job.running
    [run] = list_runs(space.runs_dir)
    assert run["state"] == FAILED and run["resumable"]
    assert space.resume_refusal(job.folder.name) is None


def test_of_six_starts_at_once_exactly_one_runs(tmp_path):
    space = Workspace(tmp_path / "runs", separate_process=True)
    configs = [default_config(data=DEMO_TRAIN, output=str(tmp_path / "runs" / f"run-{n}"), model="demo",
                              max_steps=400) for n in range(6)]
    barrier, outcomes = threading.Barrier(6), []

    def press_start(config):
        barrier.wait()
        try:
            outcomes.append(space.start(config))
        except JobBusy as error:
            outcomes.append(error)

    threads = [threading.Thread(target=press_start, args=(config,)) for config in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [outcome for outcome in outcomes if not isinstance(outcome, JobBusy)]
    try:
        assert len(started) == 1 and len(outcomes) == 6
        assert [path.name for path in (tmp_path / "runs").iterdir()] == [started[0].folder.name]  # no others made
    finally:
        for job in started:
            job.stop()
            job.wait(120)


def test_a_stale_stop_request_is_cleared_when_a_run_is_claimed(tmp_path):
    """A stop marker left by a process that is gone must not stop the next start at its first step."""
    from studio.train.job import claim_run

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.request_stop()
    lock = claim_run(folder, resume=False)
    try:
        assert not folder.stop_requested() and folder.is_locked()
    finally:
        lock.release()
