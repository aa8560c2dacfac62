"""Crash safety, measured: `python -m studio train` killed with SIGKILL at a random moment, then `--resume`d.

    python -m studio.benchmarks.kill_resume [--trials 24] [--max-steps 20] [--parallel 2] [--seed 0]
        [--workdir DIR] [--json]

Each trial trains the demo model into a fresh run folder with the default checkpoint settings (every 10 % of the
steps, every 10 minutes), kills the process with SIGKILL at a random moment of one of three phases — set-up
(after config.json appears: data, model), training (after a random step, a random part of a step later: often
in the middle of a checkpoint write) or wrap-up (after the last step: final checkpoint, adapter, status) — then
runs `python -m studio train --output DIR --resume` and checks the run: the resume succeeded (or, when the kill
came after the run had finished, was refused as completed), it ended at max_steps and not past it, metrics.jsonl
holds each step once with the elapsed time never going back, the adapter is whole, at most save_total_limit
checkpoints are left, and the kill lost at most one checkpoint interval. Prints the count of good resumes
(`RESULT {json}` with --json). tests/test_runs.py runs a few trials of the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.config import PROJECT_ROOT, SAMPLES_DIR

DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")
PHASES = ("setup", "training", "wrap-up")
TRAIN_ARGS = ("--batch-size", "4", "--max-length", "128")


@dataclass
class Trial:
    folder: str
    phase: str
    killed: bool = False  # False: the process had already exited by itself
    killed_after_step: int = 0  # the last step in metrics.jsonl when the kill came
    resumed_from: int | None = None  # the checkpoint step the resume started from (None: from step 0)
    cut_checkpoints: list[str] = field(default_factory=list)  # left incomplete by the kill (it came mid-save)
    resume_code: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _env() -> dict:
    # One thread a process: the demo model is tiny, and several trials share the cores (spinning OpenMP threads
    # of processes that outnumber the cores cost 3× the CPU time).
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _last_step(folder: Path) -> int:
    from studio.runs import RunFolder

    rows = [row for row in RunFolder(folder).read_metrics() if "loss" in row]
    return rows[-1]["step"] if rows else 0


def _wait(predicate, process, timeout: float) -> bool:
    """Poll until `predicate()` or the process exits; whether the predicate came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def kill_at_random(folder: Path, phase: str, max_steps: int, rng: random.Random, timeout: float = 300) -> Trial:
    """Start a training run and kill it (SIGKILL) at a random moment of `phase`."""
    trial = Trial(str(folder), phase)
    process = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", "--data", DEMO_TRAIN, "--output", str(folder),
         "--max-steps", str(max_steps), *TRAIN_ARGS],
        cwd=PROJECT_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if phase == "setup":
            reached = _wait(lambda: (folder / "config.json").exists(), process, timeout)
            delay = rng.uniform(0, 3.0)  # reading the data, loading the model, the first steps
        elif phase == "training":
            target = rng.randint(1, max_steps - 1)
            reached = _wait(lambda: _last_step(folder) >= target, process, timeout)
            delay = rng.uniform(0, 0.3)  # somewhere in the next step or its checkpoint write
        else:
            reached = _wait(lambda: _last_step(folder) >= max_steps, process, timeout)
            delay = rng.uniform(0, 1.0)  # the final checkpoint, the adapter, the status
        if reached:
            time.sleep(delay)
        if process.poll() is None:
            trial.killed_after_step = _last_step(folder)
            process.send_signal(signal.SIGKILL)
            trial.killed = True
        process.wait(timeout)
        if not trial.killed:
            trial.killed_after_step = _last_step(folder)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return trial


def resume_in_subprocess(folder: Path) -> tuple[int, str]:
    process = subprocess.run([sys.executable, "-m", "studio", "train", "--output", str(folder), "--resume"],
                             cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    return process.returncode, process.stderr


def resume_in_process(folder: Path) -> tuple[int, str]:
    """The same command through studio.cli.main, without paying for the imports again (the tests' way)."""
    import contextlib
    import io

    from studio.cli import main

    import torch

    handler, threads = signal.getsignal(signal.SIGINT), torch.get_num_threads()
    errors = io.StringIO()
    try:
        torch.set_num_threads(1)  # as the trials' processes (_env)
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", "--output", str(folder), "--resume"])
    finally:
        signal.signal(signal.SIGINT, handler)
        torch.set_num_threads(threads)
    return code, errors.getvalue()


def check_resume(trial: Trial, max_steps: int, resume=resume_in_subprocess) -> Trial:
    from studio.runs import COMPLETED, RunFolder, _safetensors_whole, checkpoint_problem, checkpoint_step
    from studio.train.trainer import auto_save_steps

    folder = Path(trial.folder)
    run = RunFolder(folder)
    checkpoint = run.latest_checkpoint()
    trial.resumed_from = checkpoint_step(checkpoint) if checkpoint else None
    trial.cut_checkpoints = [path.name for path in run.checkpoints() if checkpoint_problem(path)]
    finished_before = run.read_status().get("state") == COMPLETED
    if not run.is_run():
        # Killed before the run folder was written: nothing to resume, and nothing lost but the start-up.
        code, errors = resume(folder)
        trial.resume_code = code
        if code != 2 or "not a run folder" not in errors:
            trial.problems.append(f"resume of a folder without config.json: exit {code}, {errors[-300:]!r}")
        return trial
    interval = auto_save_steps(max_steps)
    lost = trial.killed_after_step - (trial.resumed_from or 0)
    if trial.killed and not finished_before and lost > interval:
        trial.problems.append(f"the kill lost {lost} steps, more than one interval ({interval})")
    code, errors = resume(folder)
    trial.resume_code = code
    expected = 2 if finished_before else 0
    if code != expected:
        trial.problems.append(f"resume exit {code} (expected {expected}): {errors[-500:]!r}")
    status = run.read_status()
    if status.get("state") != COMPLETED or status.get("step") != max_steps:
        trial.problems.append(f"ended {status.get('state')} at step {status.get('step')}, not completed at "
                              f"{max_steps}: {status.get('message')}")
    rows = [row for row in run.read_metrics() if "loss" in row]
    steps = [row["step"] for row in rows]
    if steps != list(range(1, max_steps + 1)):
        trial.problems.append(f"metrics steps {steps}")
    elapsed = [row["elapsed_s"] for row in rows]
    if any(later < earlier for earlier, later in zip(elapsed, elapsed[1:])):
        trial.problems.append(f"elapsed went back: {elapsed}")
    if not _safetensors_whole(run.adapter_dir / "adapter_model.safetensors"):
        trial.problems.append("the adapter is missing or cut")
    checkpoints = run.checkpoints()
    if checkpoints and checkpoint_step(checkpoints[-1]) > max_steps:
        trial.problems.append(f"a checkpoint past max_steps: {checkpoints[-1].name}")
    if len(checkpoints) > run.read_config().get("save_total_limit", 3):
        trial.problems.append(f"{len(checkpoints)} checkpoints left")
    return trial


def run_trials(trials: int, max_steps: int = 20, seed: int = 0, parallel: int = 2, workdir: str | None = None,
               resume=resume_in_subprocess) -> list[Trial]:
    """`trials` kills, each phase in turn, `parallel` training processes at a time; each killed run is resumed
    (in the calling thread: an in-process resume installs a signal handler) while the next ones train."""
    rng = random.Random(seed)
    root = Path(workdir or tempfile.mkdtemp(prefix="kill-resume-"))
    plans = [(root / f"trial-{number:03d}", PHASES[number % len(PHASES)], random.Random(rng.random()))
             for number in range(trials)]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        killing = [pool.submit(kill_at_random, folder, phase, max_steps, trial_rng) for folder, phase, trial_rng in plans]
        return [check_resume(future.result(), max_steps, resume) for future in killing]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    results = run_trials(args.trials, args.max_steps, args.seed, args.parallel, args.workdir)
    good = sum(trial.ok for trial in results)
    summary = {"trials": len(results), "good_resumes": good, "killed": sum(trial.killed for trial in results),
               "killed_mid_checkpoint": sum(bool(trial.cut_checkpoints) for trial in results),
               "by_phase": {phase: sum(trial.ok for trial in results if trial.phase == phase) for phase in PHASES},
               "seconds": round(time.time() - started, 1)}
    for trial in results:
        words = "ok" if trial.ok else "; ".join(trial.problems)
        print(f"{Path(trial.folder).name} {trial.phase:<8} killed={trial.killed!s:<5} after step "
              f"{trial.killed_after_step:>2}, resumed from {trial.resumed_from}"
              f"{' (cut: ' + ', '.join(trial.cut_checkpoints) + ')' if trial.cut_checkpoints else ''}: {words}",
              file=sys.stderr)
    if args.json:
        print("RESULT " + json.dumps({**summary, "failures": [asdict(t) for t in results if not t.ok]}))
    else:
        print(f"{good} of {len(results)} resumes good ({summary['killed']} killed mid-run, "
              f"{summary['killed_mid_checkpoint']} of them in a checkpoint write; {summary['seconds']} s)")
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
