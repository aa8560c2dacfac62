"""A training run is a folder on disk, so nothing depends on the process staying alive.

    runs/<name>/
        config.json         the TrainConfig (no secrets)
        status.json         state (running | completed | stopped | failed), message, cause, fix, step counts
        metrics.jsonl       one JSON object per logged step (and per evaluation)
        checkpoint-N/       Trainer checkpoints (adapter, optimizer, scheduler, trainer state), for resume
        adapter/            the final (or last stopped) adapter in PEFT format
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RUNNING, COMPLETED, STOPPED, FAILED = "running", "completed", "stopped", "failed"
ADAPTER_DIR = "adapter"
STOP_MARKER = "stop-requested"


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
                status["pid"] = os.getpid()
            self.path.mkdir(parents=True, exist_ok=True)
            _write_json(self.path / "status.json", status)
        return status

    def read_status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    # metrics -------------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        with self._metrics_lock, open(self.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        try:
            lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash: the rest is still good
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
                    except (ValueError, KeyError):
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
        found = [p for p in self.path.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def latest_checkpoint(self) -> Path | None:
        complete = [p for p in self.checkpoints() if (p / "trainer_state.json").exists()]
        return complete[-1] if complete else None


def run_of_adapter(adapter: str | Path) -> Path:
    """The run folder an adapter folder belongs to (it is the run's adapter/ or one of its checkpoint-N), else
    the adapter folder itself: what exports and reports are named after."""
    adapter = Path(adapter)
    if adapter.name == "adapter" or re.fullmatch(r"checkpoint-\d+", adapter.name):
        return adapter.parent
    return adapter


def _write_json(path: Path, data: dict) -> None:
    # Write then rename, so a reader (another tab, a restart) never sees half a file; the temporary name
    # is the writer's own, so two writers never rename each other's file away.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)


def list_runs(runs_dir: Path) -> list[dict]:
    """Run history read from disk, newest first: one dict per run folder."""
    runs = []
    if not Path(runs_dir).exists():
        return runs
    for path in Path(runs_dir).iterdir():
        if not (path / "config.json").exists():
            continue
        run = RunFolder(path)
        status = run.read_status()
        config = {}
        try:
            config = run.read_config()
        except (OSError, ValueError):
            pass
        state = status.get("state", "unknown")
        if state == RUNNING and not _process_alive(status.get("pid")):
            state = "interrupted"  # the process that ran it is gone (restart, crash)
        first_loss, last_loss = run.loss_endpoints()
        runs.append({
            "name": run.name, "path": str(path), "state": state, "model": config.get("model"),
            "method": config.get("method"), "step": status.get("step", 0), "max_steps": status.get("max_steps"),
            "last_loss": last_loss, "first_loss": first_loss,
            "started": status.get("started"), "message": status.get("message", ""),
            "has_adapter": (run.adapter_dir / "adapter_config.json").exists(),
            "resumable": run.latest_checkpoint() is not None and state != COMPLETED,
        })
    return sorted(runs, key=lambda run: run.get("started") or 0, reverse=True)


def find_running(runs_dir: Path) -> RunFolder | None:
    """The run whose status says running and whose process is alive (reads status files only: cheap)."""
    if not Path(runs_dir).exists():
        return None
    for path in Path(runs_dir).iterdir():
        status = RunFolder(path).read_status() if (path / "status.json").exists() else {}
        if status.get("state") == RUNNING and _process_alive(status.get("pid")):
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
