"""The one owner of long-running state: the training job (and, later, loaded models).

Every browser session talks to the same Workspace, so a reloaded page re-attaches to the running job and
a second Start is refused while one runs (here, or in another process on the same runs folder: a run is
running while its process holds the run folder's lock, studio.runs). The run history comes from disk, so it
survives restarts.

On a shared server (studio.spaces.multiuser) runs are per visitor: each call passes the `owner` token of its
browser session (studio.spaces.run_owner), a run records the token of the session that started it, and a session
lists, chats with, resumes and stops only its own runs, named with a random suffix nobody else can guess. The
one-run-at-a-time rule still holds for everyone; another visitor's Start is told only that a run is going. With
`owner=None` (the studio's own machine) every page sees every run.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from pathlib import Path

from studio import config as studio_config
from studio import spaces
from studio.chat.generate import ChatEngine, ModelBusy
from studio.runs import RunFolder, find_running, list_runs, owned_by
from studio.train.job import JobBusy, ResumeRefused, TrainConfig, TrainingJob, claim_run
from studio.train.launch import TrainingProcess

# What another visitor of a shared server is told while a run goes: not whose, not its name, no path.
BUSY_FOR_VISITORS = "A training run is going; try again when it ends."
DEVICE_BUSY_FOR_VISITORS = "A training run is using the device. Chat when it ends."
# What a shared server answers for a typed adapter folder it does not read: the words of
# studio.chat.generate.resolve_adapter, so that another visitor's run reads like any folder outside the studio.
SHARED_ADAPTER_RULE = ("On this shared studio an adapter is one of the studio's runs (pick one from the list) or a "
                       "folder inside the studio's home (STUDIO_HOME); other folders of the server are not read.")


ONE_RUN_AT_A_TIME = "Another training run is going; stop it or wait for it to finish, then start again."


class Workspace:
    """`separate_process`: train runs in a process of their own (studio.train.launch; the default) or in a
    thread of this one (on ZeroGPU, where the GPU exists only inside the page's own call)."""

    def __init__(self, runs_dir: Path | None = None, separate_process: bool | None = None):
        self.runs_dir = Path(runs_dir or studio_config.RUNS_DIR)
        self.job: TrainingJob | TrainingProcess | None = None
        self.chat = ChatEngine()
        self.separate_process = not spaces.on_zero_gpu() if separate_process is None else separate_process
        self._starting = threading.Lock()  # a busy check and the claim of the run's lock, as one step

    # whose runs -----------------------------------------------------------------------------------
    @staticmethod
    def _job_is(job: TrainingJob | None, owner: str | None) -> bool:
        return job is not None and owned_by({"owner": job.owner}, owner)

    def training_busy(self, owner: str | None = None) -> str | None:
        """Why the device is taken by training, or None when it is free for chat (another visitor's run unnamed)."""
        job = self.job
        if job and job.running:
            if not self._job_is(job, owner):
                return DEVICE_BUSY_FOR_VISITORS
            status = job.status
            return (f"Training run {job.folder.name} is using the device (step {status.get('step', 0)} of "
                    f"{status.get('max_steps') or '?'}). Chat when it finishes, or stop it in the Train tab.")
        return None

    def adapters(self, owner: str | None = None) -> list[tuple[str, str]]:
        """(label, run name) of the runs that have an adapter (final or from a checkpoint), newest first: names,
        never server paths (adapter_source turns one back into its folder)."""
        choices = []
        for run in self.history(owner):
            if run["has_adapter"] or run["checkpoint"]:
                choices.append((f"{run['name']} ({run['state']}, {run['model']})", run["name"]))
        return choices

    def adapter_source(self, value: str | None, owner: str | None = None) -> str:
        """The Chat tab's adapter box → what studio.chat.generate.resolve_adapter reads. A run's name (what the
        list holds) → its folder, when it is `owner`'s; anything else is a typed folder, passed on as typed. On a
        shared server a typed folder inside the runs folder must be one of `owner`'s runs: another's is refused
        with the words any folder outside the studio gets."""
        value = (value or "").strip()
        if not value:
            return ""
        if "/" not in value and "\\" not in value and value not in (".", ".."):
            candidate = self.runs_dir / value
            if (candidate / "config.json").exists() and owned_by(RunFolder(candidate).read_status(), owner):
                return str(candidate)
        if owner is not None:
            try:
                typed = Path(value).expanduser().resolve()
                runs = self.runs_dir.expanduser().resolve()
            except (OSError, RuntimeError, ValueError):
                raise ValueError(SHARED_ADAPTER_RULE) from None
            if typed == runs or (typed.is_relative_to(runs) and not owned_by(
                    RunFolder(runs / typed.relative_to(runs).parts[0]).read_status(), owner)):
                raise ValueError(SHARED_ADAPTER_RULE)
        return value

    # starting -------------------------------------------------------------------------------------
    def new_run_folder(self, model: str, method: str, owner: str | None = None) -> Path:
        """A run folder name not taken yet (two runs started within a second get -2, -3, …); not created here.
        For a visitor of a shared server (`owner`) the name ends in a random part nobody else can guess."""
        short = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/")).name or "model")
        private = f"-{secrets.token_urlsafe(12)}" if owner is not None else ""
        base = self.runs_dir / f"{short}-{method}-{time.strftime('%Y%m%d-%H%M%S')}{private}"
        folder, number = base, 1
        while folder.exists():
            number += 1
            folder = base.with_name(f"{base.name}-{number}")
        return folder

    def _refuse_if_busy(self, owner: str | None = None) -> None:
        """One training at a time across the app: a run another process trains here (a ZeroGPU worker, a CLI
        run on the same STUDIO_HOME) holds the device too. This process's own job is TrainingJob.start's check,
        except for a visitor of a shared server, who is told only that a run is going (or, for its own, which)."""
        job = self.job
        if job and job.running:
            if owner is None:
                raise JobBusy(ONE_RUN_AT_A_TIME)
            if self._job_is(job, owner):
                raise JobBusy(f"Your run {job.folder.name} is training now; stop it or wait for it to finish, then "
                              "start again.")
            raise JobBusy(BUSY_FOR_VISITORS)
        other = find_running(self.runs_dir)
        if other:
            status = other.read_status()
            if owner is not None and not owned_by(status, owner):
                raise JobBusy(BUSY_FOR_VISITORS)
            raise JobBusy(f"Another training run is going ({other.name}, step {status.get('step', 0)} of "
                          f"{status.get('max_steps') or '?'}); stop it or wait for it to finish, then start again.")

    def _start(self, config: TrainConfig, resume: bool, owner: str | None) -> TrainingJob | TrainingProcess:
        """The busy check and the claim of the run as one step (of six Starts at once exactly one runs)."""
        with self._starting:
            self._refuse_if_busy(owner)
            try:
                self.chat.give_gpu_to_training()  # the model loaded for chat holds GBs the run needs
            except ModelBusy as busy:
                raise JobBusy(str(busy)) from None
            try:
                if self.separate_process:
                    job = TrainingProcess(config, resume=resume, owner=owner)
                    self.job = job.start(claim_run(job.folder, resume))
                else:
                    self.job = TrainingJob(config, resume=resume, owner=owner).start()
            except JobBusy:
                if owner is not None:  # another process's Start won; say nothing of it
                    raise JobBusy(BUSY_FOR_VISITORS) from None
                raise
            return self.job

    def start(self, config: TrainConfig, owner: str | None = None) -> TrainingJob | TrainingProcess:
        """Start a new run in the background; JobBusy while another one is going."""
        return self._start(config, False, owner)

    def resume_refusal(self, run_name: str, owner: str | None = None) -> str | None:
        """Why the run cannot be resumed (completed, training now), or None: what the Train tab's Resume shows."""
        return RunFolder(self.run_path(run_name, owner)).resume_refusal()

    def resume(self, run_name: str, owner: str | None = None, **overrides) -> TrainingJob | TrainingProcess:
        """Go on with a stopped, failed or interrupted run from its newest complete checkpoint (from step 0 when
        a crash came before the first); ResumeRefused for a completed or running one, touching nothing."""
        folder = RunFolder(self.run_path(run_name, owner))
        refusal = folder.resume_refusal()
        if refusal:
            raise ResumeRefused(refusal)
        config = TrainConfig.from_json({**folder.read_config(), **overrides, "output": str(folder.path)})
        return self._start(config, True, owner)

    def stop(self, owner: str | None = None) -> bool:
        """Stop the running run gracefully, in this process or (ZeroGPU) in a GPU worker, via its folder; only
        `owner`'s run when given (False: none of its runs is going)."""
        if self.job and self.job.running:
            if not self._job_is(self.job, owner):
                return False
            self.job.stop()
            return True
        running = find_running(self.runs_dir)
        if running and owned_by(running.read_status(), owner):
            running.request_stop()
            return True
        return False

    # reading ---------------------------------------------------------------------------------------
    def live(self, owner: str | None = None) -> dict:
        """What the Train tab shows: this process's job, else a run going on in another process (ZeroGPU); only
        `owner`'s when given. `busy`: a run of someone else's holds the device (shown to a visitor unnamed)."""
        nothing = {"name": None, "status": {}, "metrics": [], "running": False, "busy": False}
        job = self.job
        if job and job.running:
            if self._job_is(job, owner):
                return {"name": job.folder.name, "status": job.status, "metrics": job.metrics(), "running": True,
                        "busy": False}
            return {**nothing, "busy": True}
        folder = find_running(self.runs_dir)
        if folder:
            status = folder.read_status()
            if owned_by(status, owner):
                return {"name": folder.name, "status": status, "metrics": folder.read_metrics(), "running": True,
                        "busy": False}
            return {**nothing, "busy": True}
        if self._job_is(job, owner):
            return {"name": job.folder.name, "status": job.status, "metrics": job.metrics(), "running": False,
                    "busy": False}
        return nothing

    def run_path(self, run_name: str, owner: str | None = None) -> Path:
        """The folder of the run named so (one of `owner`'s when given); ValueError, the same for a run of
        someone else's as for none, otherwise."""
        path = (self.runs_dir / run_name).resolve()
        if (path.parent != self.runs_dir.resolve() or not (path / "config.json").exists()
                or not owned_by(RunFolder(path).read_status(), owner)):
            where = "" if owner is not None else f" in {self.runs_dir}"
            raise ValueError(f"No run named {run_name!r}{where}.")
        return path

    def history(self, owner: str | None = None) -> list[dict]:
        return list_runs(self.runs_dir, owner)


_WORKSPACE: Workspace | None = None


def workspace() -> Workspace:
    """The process-wide workspace (created on first use, after STUDIO_HOME is known)."""
    global _WORKSPACE
    if _WORKSPACE is None:
        _WORKSPACE = Workspace()
    return _WORKSPACE
