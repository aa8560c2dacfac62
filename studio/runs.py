"""A training run is a folder on disk, so nothing depends on the process staying alive.

    runs/<name>/
        config.json         the TrainConfig (no secrets)
        status.json         state (running | completed | stopped | failed), message, cause, fix, step counts; on a
                            shared server the owner (the token of the browser session that started it)
        metrics.jsonl       one JSON object per logged step (and per evaluation); each step once, resumes included
        run.lock            held (flock) by the process training the run, for the life of the training
        checkpoint-N/       Trainer checkpoints (adapter, optimizer, scheduler, RNG, trainer state), for resume
        adapter/            the final (or last stopped) adapter in PEFT format

Liveness is the lock, never the pid in status.json: the OS drops an flock when its process dies, however it
dies, so a run whose status says running and whose lock is free was interrupted (kill -9, a crash, a restart
that gave the app the same pid again) and can be resumed from its newest complete checkpoint.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import struct
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on a POSIX system: liveness falls back to the pid
    fcntl = None

RUNNING, COMPLETED, STOPPED, FAILED = "running", "completed", "stopped", "failed"
INTERRUPTED = "interrupted"  # read, never written: status says running but no process holds the run's lock
STATES = (RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED)
ADAPTER_DIR = "adapter"
STOP_MARKER = "stop-requested"
LOCK_FILE = "run.lock"
# What a Trainer checkpoint must hold to resume exactly: weights, optimizer, scheduler, RNG, then the trainer state
# (the Trainer writes it last, so a kill -9 while saving leaves it missing or cut).
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PARTS = ("optimizer.pt", "scheduler.pt")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_TRASH_PREFIX = ".deleting-"


class RunLocked(RuntimeError):
    """Another process (or another job of this one) is training this run; the message says so."""


class RunLock:
    """An exclusive flock on the run's run.lock, held until `release()` or the process ends."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def detach(self) -> int:
        """The locked file descriptor, handed over (to a child process: studio.train.launch); this object lets
        go of it without unlocking. flock belongs to the open file, so the lock lasts while any holder of the
        descriptor keeps it open."""
        fd, self._fd = self._fd, None
        if fd is None:
            raise RuntimeError("this lock is not held")
        return fd

    @property
    def held(self) -> bool:
        return self._fd is not None


@dataclass
class RunFolder:
    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        self._lock = threading.Lock()
        self._metrics_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    def is_run(self) -> bool:
        return (self.path / "config.json").exists()

    # config --------------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.path / "config.json", config)

    def read_config(self) -> dict:
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))

    # status --------------------------------------------------------------------------------------
    def write_status(self, state: str, **fields) -> dict:
        with self._lock:  # read-modify-write: two threads must not interleave
            status = {**self.read_status(), "state": state, "updated": time.time(), **fields}
            if state == RUNNING:
                status["pid"] = os.getpid()  # for people reading the file; liveness is the lock (is_locked)
            self.path.mkdir(parents=True, exist_ok=True)
            _write_json(self.path / "status.json", status)
        return status

    def read_status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def state(self, status: dict | None = None) -> str:
        """The state as a reader should see it: running only while a process holds the run's lock; a status
        left at running by a process that is gone reads as interrupted."""
        status = self.read_status() if status is None else status
        if self.is_locked():
            return RUNNING
        state = status.get("state", "unknown")
        return INTERRUPTED if state == RUNNING else state

    # liveness: the run's lock --------------------------------------------------------------------
    def acquire(self, timeout: float = 3.0) -> RunLock:
        """Take the run's lock for this process (RunLocked when another holder has it). Readers probe the lock
        for microseconds (is_locked), so a refusal is only believed after `timeout` seconds of retrying."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK_FILE
        if fcntl is None:
            return RunLock(path, None)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return RunLock(path, fd)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    status = self.read_status()
                    raise RunLocked(f"Run {self.name} is being trained by another process (pid "
                                    f"{status.get('pid', '?')}, step {status.get('step', 0)}); stop it or wait for "
                                    "it to finish.") from None
                time.sleep(0.02)
            except BaseException:
                os.close(fd)
                raise

    def is_locked(self) -> bool:
        """Whether a live process holds the run's lock (a shared probe, dropped at once; creates nothing)."""
        if fcntl is None:
            status = self.read_status()
            return status.get("state") == RUNNING and _process_alive(status.get("pid"))
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False  # no lock file: never trained by this version, or not a run
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    # metrics -------------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        line = json.dumps(row) + "\n"
        with self._metrics_lock, open(self.path / "metrics.jsonl", "a+b") as handle:
            if handle.seek(0, os.SEEK_END):
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short by a crash: never glue this row onto it
                    line = "\n" + line
            handle.write(line.encode("utf-8"))

    def read_metrics(self) -> list[dict]:
        try:
            lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: the rest is still good
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def rewrite_metrics(self, up_to_step: int) -> list[dict]:
        """Keep the rows of steps up to `up_to_step` (a resume redoes the later ones) and drop cut lines, in one
        atomic replace; the rows kept."""
        rows = [row for row in self.read_metrics() if int(row.get("step", 0)) <= up_to_step]
        with self._metrics_lock:
            path = self.path / "metrics.jsonl"
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(row) + "\n" for row in rows))
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(path)
        return rows

    def loss_endpoints(self) -> tuple[float | None, float | None]:
        """First and last training loss from the file's two ends (64 KiB each, every row has a loss): the history
        table asks every second, for every run, and a long run's metrics file runs to megabytes."""
        window = 1 << 16
        try:
            with open(self.path / "metrics.jsonl", "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(0)
                head = handle.read(window)
                handle.seek(max(0, size - window))
                tail = handle.read()
        except OSError:
            return None, None
        lines = head.splitlines()
        if size > window:  # the head's last line and the tail's first may be cut: the line parser skips them
            lines += tail.splitlines()

        def first_loss(candidates):
            for line in candidates:
                if b'"loss"' in line:
                    try:
                        return json.loads(line)["loss"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a crash
            return None

        return first_loss(lines), first_loss(reversed(lines))

    # stop requests from another process ------------------------------------------------------------
    # (on ZeroGPU the run lives in a GPU worker process: the page's Stop reaches it through the folder)
    def request_stop(self) -> None:
        (self.path / STOP_MARKER).touch()

    def stop_requested(self) -> bool:
        return (self.path / STOP_MARKER).exists()

    def clear_stop_request(self) -> None:
        (self.path / STOP_MARKER).unlink(missing_ok=True)

    # checkpoints ---------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Every checkpoint-N folder, complete or not, oldest step first."""
        found = [p for p in self.path.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
        return sorted(found, key=checkpoint_step)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (see checkpoint_problem), or None."""
        return self.resume_point()[0]

    def resume_point(self) -> tuple[Path | None, list[str]]:
        """(the newest complete checkpoint or None, why each newer one was passed over)."""
        passed_over = []
        for checkpoint in reversed(self.checkpoints()):
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return checkpoint, passed_over
            passed_over.append(f"{checkpoint.name}: {problem}")
        return None, passed_over

    def newest_checkpoint_name(self) -> str | None:
        """The newest checkpoint the Trainer finished writing, by a cheap test (its trainer state exists): for
        listings; resume checks completeness in full."""
        for checkpoint in reversed(self.checkpoints()):
            if (checkpoint / TRAINER_STATE).exists():
                return checkpoint.name
        return None

    def remove_incomplete_checkpoints(self) -> list[str]:
        """Delete the checkpoints a crash left unfinished (only while holding the run's lock: nobody is writing
        one); their names."""
        removed = []
        for checkpoint in self.checkpoints():
            if checkpoint_problem(checkpoint) is not None:
                _remove_tree(checkpoint)
                removed.append(checkpoint.name)
        return removed

    def prune_checkpoints(self, keep: int) -> list[str]:
        """Keep the newest `keep` complete checkpoints (at least one: the newest complete one is never deleted)
        and delete everything older; the names deleted. A folder is renamed out of the checkpoint-N pattern
        before it is deleted, so a kill in the middle never leaves a half-deleted checkpoint that looks whole."""
        for leftover in self.path.glob(f"{_TRASH_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        checkpoints = self.checkpoints()
        complete = [p for p in checkpoints if checkpoint_problem(p) is None]
        if not complete:
            return []
        oldest_kept = checkpoint_step(complete[-max(1, keep):][0])
        removed = []
        for checkpoint in checkpoints:
            if checkpoint_step(checkpoint) < oldest_kept:
                _remove_tree(checkpoint)
                removed.append(checkpoint.name)
        return removed

    # resume ---------------------------------------------------------------------------------------
    def resume_refusal(self, status: dict | None = None, locked_by_caller: bool = False) -> str | None:
        """Why this run cannot be resumed (touching nothing), or None when it can."""
        if not self.is_run():
            return f"{self.path} is not a run folder (no config.json): start a new run there instead of resuming."
        status = self.read_status() if status is None else status
        # Held with a status that is no longer running: its process is writing its last words and lets go in a
        # moment (the lock is released after the final status); acquire() waits for that.
        if not locked_by_caller and status.get("state") == RUNNING and self.is_locked():
            return (f"Run {self.name} is training now (step {status.get('step', 0)} of "
                    f"{status.get('max_steps') or '?'}): stop it first, or wait for it to finish.")
        if status.get("state") == COMPLETED:
            return (f"Run {self.name} is completed ({status.get('step', 0)} steps) and its adapter is saved; "
                    "resuming would retrain it and overwrite that adapter. Start a new run to train more.")
        return None


def checkpoint_step(checkpoint: Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from exactly (missing or cut parts), or None when it is complete: its
    trainer state parses, its adapter weights and config are whole, its optimizer, scheduler and RNG state are
    whole archives. Reads headers and directories, not tensors."""
    checkpoint = Path(checkpoint)
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
            return f"{TRAINER_STATE} has no global step"
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (the save did not finish)"
    except (OSError, ValueError):
        return f"{TRAINER_STATE} is cut or unreadable"
    try:
        json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "adapter_config.json is missing or cut"
    weights = next((checkpoint / name for name in ADAPTER_WEIGHTS if (checkpoint / name).exists()), None)
    if weights is None:
        return "no adapter weights"
    if not (_safetensors_whole(weights) if weights.suffix == ".safetensors" else _archive_whole(weights)):
        return f"{weights.name} is cut"
    for part in CHECKPOINT_PARTS:
        if not (checkpoint / part).exists():
            return f"no {part}"
        if not _archive_whole(checkpoint / part):
            return f"{part} is cut"
    rng = sorted(checkpoint.glob("rng_state*.pth"))
    if not rng:
        return "no RNG state"
    if not all(_archive_whole(path) for path in rng):
        return f"{rng[0].name} is cut"
    return None


def _safetensors_whole(path: Path) -> bool:
    """A safetensors file is whole when its header parses and the file is as long as the header says."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > size - 8:
                return False
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        return size == 8 + header_size + end
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return False


def _archive_whole(path: Path) -> bool:
    """torch.save writes a zip archive; a cut one has no central directory at its end."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _remove_tree(path: Path) -> None:
    trash = path.with_name(f"{_TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        path.rename(trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def run_of_adapter(adapter: str | Path) -> Path:
    """The run folder an adapter folder belongs to (it is the run's adapter/ or one of its checkpoint-N), else
    the adapter folder itself: what exports and reports are named after."""
    adapter = Path(adapter)
    if adapter.name == "adapter" or re.fullmatch(r"checkpoint-\d+", adapter.name):
        return adapter.parent
    return adapter


def owned_by(status: dict, owner: str | None) -> bool:
    """Whether a run with this status is `owner`'s to see, chat with, resume and stop: every run when owner is None
    (the studio's own machine), else only the runs whose status records that owner token (a shared server)."""
    if owner is None:
        return True
    recorded = status.get("owner")
    return isinstance(recorded, str) and hmac.compare_digest(recorded.encode(), owner.encode())


def _write_json(path: Path, data: dict) -> None:
    # Write then rename, so a reader (another tab, a restart) never sees half a file; the temporary name
    # is the writer's own, so two writers never rename each other's file away.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)


def list_runs(runs_dir: Path, owner: str | None = None) -> list[dict]:
    """Run history read from disk, newest first: one dict per run folder (only `owner`'s runs when given)."""
    runs = []
    if not Path(runs_dir).exists():
        return runs
    for path in Path(runs_dir).iterdir():
        if not (path / "config.json").exists():
            continue
        run = RunFolder(path)
        status = run.read_status()
        if not owned_by(status, owner):
            continue
        config = {}
        try:
            config = run.read_config()
        except (OSError, ValueError):
            pass
        state = run.state(status)
        first_loss, last_loss = run.loss_endpoints()
        checkpoint = run.newest_checkpoint_name()
        runs.append({
            "name": run.name, "path": str(path), "state": state, "model": config.get("model"),
            "method": config.get("method"), "step": status.get("step", 0), "max_steps": status.get("max_steps"),
            "last_loss": last_loss, "first_loss": first_loss,
            "started": status.get("started"), "message": status.get("message", ""),
            "has_adapter": (run.adapter_dir / "adapter_config.json").exists(),
            "checkpoint": checkpoint,
            # Resume continues from the newest complete checkpoint, or trains again from step 0 when a crash
            # came before the first one; a completed or running run is not resumable.
            "resumable": state in (STOPPED, FAILED, INTERRUPTED) and bool(config),
        })
    return sorted(runs, key=lambda run: run.get("started") or 0, reverse=True)


def find_running(runs_dir: Path) -> RunFolder | None:
    """The run a live process is training: the one whose lock is held (probes lock files only: cheap)."""
    if not Path(runs_dir).exists():
        return None
    for path in Path(runs_dir).iterdir():
        if path.is_dir() and RunFolder(path).is_locked():
            return RunFolder(path)
    return None


def _process_alive(pid) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True
