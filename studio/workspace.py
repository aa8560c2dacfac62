"""The one owner of long-running state: the training job (and, later, loaded models).

Every browser session talks to the same Workspace, so a reloaded page re-attaches to the running job and
a second Start is refused while one runs (here, or in another process on the same runs folder: a run is
running while its process holds the run folder's lock, studio.runs). The run history comes from disk, so it
survives restarts.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from studio import config as studio_config
from studio.chat.generate import ChatEngine
from studio.runs import RunFolder, find_running, list_runs
from studio.train.job import JobBusy, ResumeRefused, TrainConfig, TrainingJob


class Workspace:
    def __init__(self, runs_dir: Path | None = None):
        self.runs_dir = Path(runs_dir or studio_config.RUNS_DIR)
        self.job: TrainingJob | None = None
        self.chat = ChatEngine()

    def training_busy(self) -> str | None:
        """Why the device is taken by training, or None when it is free for chat."""
        job = self.job
        if job and job.running:
            status = job.status
            return (f"Training run {job.folder.name} is using the device (step {status.get('step', 0)} of "
                    f"{status.get('max_steps') or '?'}). Chat when it finishes, or stop it in the Train tab.")
        return None

    def adapters(self) -> list[tuple[str, str]]:
        """(label, path) of runs that have an adapter (final or from a checkpoint), newest first."""
        choices = []
        for run in self.history():
            if run["has_adapter"] or run["checkpoint"]:
                choices.append((f"{run['name']} ({run['state']}, {run['model']})", run["path"]))
        return choices

    def new_run_folder(self, model: str, method: str) -> Path:
        """A run folder name not taken yet (two runs started within a second get -2, -3, …); not created here."""
        short = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/")).name or "model")
        base = self.runs_dir / f"{short}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder, number = base, 1
        while folder.exists():
            number += 1
            folder = base.with_name(f"{base.name}-{number}")
        return folder

    def _refuse_if_busy(self) -> None:
        """One training at a time across the app: a run another process trains here (a ZeroGPU worker, a CLI
        run on the same STUDIO_HOME) holds the device too. This process's own job is TrainingJob.start's check."""
        if self.job and self.job.running:
            return  # TrainingJob.start refuses with its own message
        other = find_running(self.runs_dir)
        if other:
            status = other.read_status()
            raise JobBusy(f"Another training run is going ({other.name}, step {status.get('step', 0)} of "
                          f"{status.get('max_steps') or '?'}); stop it or wait for it to finish, then start again.")

    def start(self, config: TrainConfig) -> TrainingJob:
        """Start a new run in the background; JobBusy while another one is going."""
        self._refuse_if_busy()
        self.job = TrainingJob(config).start()
        return self.job

    def resume_refusal(self, run_name: str) -> str | None:
        """Why the run cannot be resumed (completed, training now), or None: what the Train tab's Resume shows."""
        return RunFolder(self.run_path(run_name)).resume_refusal()

    def resume(self, run_name: str, **overrides) -> TrainingJob:
        """Go on with a stopped, failed or interrupted run from its newest complete checkpoint (from step 0 when
        a crash came before the first); ResumeRefused for a completed or running one, touching nothing."""
        folder = RunFolder(self.run_path(run_name))
        refusal = folder.resume_refusal()
        if refusal:
            raise ResumeRefused(refusal)
        self._refuse_if_busy()
        config = TrainConfig.from_json({**folder.read_config(), **overrides, "output": str(folder.path)})
        self.job = TrainingJob(config, resume=True).start()
        return self.job

    def stop(self) -> bool:
        """Stop the running run gracefully, in this process or (ZeroGPU) in a GPU worker, via its folder."""
        if self.job and self.job.running:
            self.job.stop()
            return True
        running = find_running(self.runs_dir)
        if running:
            running.request_stop()
            return True
        return False

    def live(self) -> dict:
        """What the Train tab shows: this process's job, else a run going on in another process (ZeroGPU)."""
        if self.job and self.job.running:
            return {"name": self.job.folder.name, "status": self.job.status, "metrics": self.job.metrics(),
                    "running": True}
        folder = find_running(self.runs_dir)
        if folder:
            return {"name": folder.name, "status": folder.read_status(), "metrics": folder.read_metrics(),
                    "running": True}
        if self.job:
            return {"name": self.job.folder.name, "status": self.job.status, "metrics": self.job.metrics(),
                    "running": False}
        return {"name": None, "status": {}, "metrics": [], "running": False}

    def run_path(self, run_name: str) -> Path:
        path = (self.runs_dir / run_name).resolve()
        if path.parent != self.runs_dir.resolve() or not (path / "config.json").exists():
            raise ValueError(f"No run named {run_name!r} in {self.runs_dir}.")
        return path

    def history(self) -> list[dict]:
        return list_runs(self.runs_dir)


_WORKSPACE: Workspace | None = None


def workspace() -> Workspace:
    """The process-wide workspace (created on first use, after STUDIO_HOME is known)."""
    global _WORKSPACE
    if _WORKSPACE is None:
        _WORKSPACE = Workspace()
    return _WORKSPACE
