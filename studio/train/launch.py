"""Runs the page starts, trained in a process of their own; the page follows them through the run folder.

Why a process and not a thread of the web server: a training step is hundreds of short torch calls, each taking
the interpreter lock back when it returns. In the server's process every visitor's check, upload and page update
holds that lock between them, and torch's CPU threads wait on the busiest core: measured on two cores, a demo
run in a thread of the server kept 9 % of its speed while twenty visitors checked a file, and 77-91 % in a
process of its own using one core less (studio.benchmarks.concurrent_checks --train, docs/benchmarks.md). A process also outlives the page:
a restarted server finds it training (its run.lock is held) and follows it from the folder, as it does a
command-line run.

The server takes the run's lock itself, before the process starts, and hands the locked file to it: the run
reads as running from the moment Start is pressed, no other Start (in this process or another) can slip in
while the child imports torch, and the lock goes with the child's last breath however it ends. The child is
`python -m studio.train.launch`; it reads its config from standard input and writes its output to train.log in
the run folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from studio.runs import FAILED, LOCK_FILE, RUNNING, RunFolder, RunLock
from studio.train.job import TrainConfig, TrainingJob

LOG_FILE = "train.log"
LOCK_FD_VARIABLE = "STUDIO_RUN_LOCK_FD"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def training_threads(cores: int | None = None) -> int:
    """CPU threads for a run started from the page: one core is left to the server (its checks and page
    updates), else torch's threads wait on the core they share with it. At least one."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


class TrainingProcess:
    """A run trained by a child process: the same face as TrainingJob (folder, owner, status, metrics, running,
    stop, wait), read from the run folder."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, owner: str | None = None):
        config.validate()
        self.config, self.resume, self.owner = config, resume, owner
        self.folder = RunFolder(Path(config.output))
        self.process: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self.data_summary: dict = {}

    def start(self, lock: RunLock) -> "TrainingProcess":
        """Start the child with the run's lock (taken by the caller, who checked under it that the run may start).
        The lock passes to the child: this process's copy of it is closed here, never unlocked."""
        if not self.resume:  # listed as running from now on, under its owner, before the child has imported torch
            self.folder.write_status(RUNNING, started=time.time(), step=0, max_steps=None,
                                     message="Starting the training process",
                                     **({"owner": self.owner} if self.owner else {}))
            self.folder.write_config(self.config.to_json())
        fd = lock.detach()
        environment = {**os.environ, LOCK_FD_VARIABLE: str(fd), "OMP_NUM_THREADS": str(training_threads()),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(_PROJECT_ROOT),
                                                                   os.environ.get("PYTHONPATH")]))}
        request = {"config": self.config.to_json(), "resume": self.resume, "owner": self.owner}
        try:
            with open(self.folder.path / LOG_FILE, "ab") as log:
                self.process = subprocess.Popen([sys.executable, "-m", "studio.train.launch"], stdin=subprocess.PIPE,
                                                stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,),
                                                env=environment, cwd=str(_PROJECT_ROOT))
        except OSError as error:
            self.folder.write_status(FAILED, message=f"Failed: the training process could not start ({error}).",
                                     cause=f"The training process could not start: {error}.",
                                     fix="Free memory or processes on the server, then Resume.", ended=time.time())
            raise
        finally:
            os.close(fd)  # the child holds the lock now (or, if it never started, nobody does)
        self.process.stdin.write(json.dumps(request).encode("utf-8"))
        self.process.stdin.close()
        self._watcher = threading.Thread(target=self._watch, name=f"watch-{self.folder.name}", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        """When the child ends without a last word (killed, out of memory, a crash before its first status), say
        so in the status: the run is then failed and resumable, with the end of its log."""
        code = self.process.wait()
        status = self.folder.read_status()
        if status.get("state") != RUNNING:
            return
        how = (f"was killed by signal {-code}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
               if code < 0 else f"ended with exit code {code}")
        self.folder.write_status(FAILED, message=f"Failed: the training process {how}.",
                                 cause=f"The training process {how} before it could say why.",
                                 fix=f"Read the end of {LOG_FILE} in the run folder; Resume goes on from the newest "
                                     "checkpoint.", traceback=log_tail(self.folder.path / LOG_FILE), ended=time.time())

    def stop(self) -> None:
        """Ask for a graceful stop: the child saves a checkpoint and writes the status at the end of its step."""
        self.folder.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self.folder.stop_requested()

    def wait(self, timeout: float | None = None) -> dict:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return self.status
        if self._watcher is not None:
            self._watcher.join(timeout)
        return self.status

    @property
    def running(self) -> bool:
        """While the child holds the run's lock: it lets go after its last status, and a Start right after a
        Stop must not wait for the interpreter to wind down."""
        return self.process is not None and self.process.poll() is None and self.folder.is_locked()

    @property
    def status(self) -> dict:
        return self.folder.read_status()

    def metrics(self, since: int = 0) -> list[dict]:
        return self.folder.read_metrics()[since:]


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def main() -> int:
    """The child: train the run whose lock it was handed, as `studio train` would; Ctrl-C or SIGTERM (the
    server's terminal, a container stopping) stop it gracefully, with a checkpoint."""
    request = json.loads(sys.stdin.read())
    config = TrainConfig.from_json(request["config"])
    lock = RunLock(Path(config.output) / LOCK_FILE, int(os.environ.pop(LOCK_FD_VARIABLE)))
    job = TrainingJob(config, resume=bool(request.get("resume")), owner=request.get("owner"), run_lock=lock)

    def stop_gracefully(signum, frame):
        print(f"signal {signum}: stopping after this step", file=sys.stderr, flush=True)
        job.stop()

    signal.signal(signal.SIGINT, stop_gracefully)
    signal.signal(signal.SIGTERM, stop_gracefully)
    status = job.run()
    print(status.get("message", ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
