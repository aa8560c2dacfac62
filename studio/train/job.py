"""A training job: LoRA / QLoRA through the transformers Trainer, in a background thread or in the foreground.

The loss covers the assistant's reasoning and answer (studio.data.template keeps the `<think>` content the
official chat template would delete). Metrics go to a thread-safe store and to the run folder; stop is
graceful at the next step and saves the adapter; a failure is written down with its cause and a fix.

Crash safety: a job holds its run folder's lock (studio.runs) for the life of the training, keeps a checkpoint
every 10 % of the steps and every 10 minutes by default, and a resume takes the newest complete checkpoint
(older ones when the newest is cut), drops the metrics rows it redoes and goes on with the elapsed time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from studio.config import DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEMO_MODEL
from studio.train.estimate import memory_setting_words
from studio.models import SDPA_BACKENDS, prefer_sdpa_backend
from studio.runs import COMPLETED, FAILED, RUNNING, STOPPED, RunFolder, RunLocked, checkpoint_step

# One training run at a time in this process, whoever asks (every browser session shares the GPU).
_ONE_RUN = threading.Lock()


class JobBusy(Exception):
    """Another run holds the trainer (or another process holds this run); the message names it."""


class ResumeRefused(ValueError):
    """The run cannot be resumed (completed, not a run); raised before anything of the run is touched."""

LORA_LR, QLORA_LR = 1e-4, 2e-4  # the seed's advice for R1-Distill 7B/8B

# The eval split of eval_split=None: 5 % of a set of at least 1,000 rows, at most 256 rows. Under 50 held-out
# rows the eval loss is mostly the noise of which rows they are; past a few hundred it steadies little more while
# each eval pass (ten a run) costs more. A smaller set, the demo's 600 rows among them, needs every row for
# training.
EVAL_SPLIT_FRACTION = 0.05
EVAL_SPLIT_MIN_ROWS = 1000
EVAL_SPLIT_MAX_ROWS = 256
EVALS_PER_RUN = 10  # eval passes over a run: enough points for an eval-loss curve


def held_out_rows(eval_split: float | None, rows: int) -> int:
    """How many of `rows` rows are held out for the eval loss: the fraction asked for, or by the auto rule."""
    if eval_split is None:
        if rows < EVAL_SPLIT_MIN_ROWS:
            return 0
        return min(EVAL_SPLIT_MAX_ROWS, int(rows * EVAL_SPLIT_FRACTION))
    return int(rows * eval_split)


def eval_split_words(eval_split: float | None, rows: int, held_out: int) -> str:
    """Why the run holds out what it does, for the status line."""
    if eval_split is None:
        if held_out:
            return (f"auto: {EVAL_SPLIT_FRACTION:.0%} of the rows, at most {EVAL_SPLIT_MAX_ROWS}, for the eval-loss "
                    "curve")
        return (f"no eval split: a set under {EVAL_SPLIT_MIN_ROWS:,} rows keeps every row for training (set Eval "
                "split to a fraction to hold some out)")
    if not held_out:
        return "no eval split (Eval split is 0)" if not eval_split else (
            f"no eval split: {eval_split:g} of {rows:,} rows is less than one row")
    return f"Eval split {eval_split:g}"


@dataclass
class TrainConfig:
    data: str
    output: str  # the run folder
    # How the data's fields map to prompt, reasoning, answer, system (the Data tab's or `--field`'s overrides,
    # e.g. {"prompt": "Question", "answer": "Response"}); empty: detected as `validate` detects it.
    mapping: dict[str, str] = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    method: str = "lora"  # lora | qlora
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # 0 lets the fused LoRA linear serve every layer (dropout needs PEFT's forward)
    target_modules: str = "all-linear"  # all-linear | attention (the seed's q/k/v/o)
    learning_rate: float | None = None  # None: 1e-4 for LoRA, 2e-4 for QLoRA
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 1
    grad_accum: int = 8
    max_length: int = DEFAULT_MAX_LENGTH
    warmup: float = 0.03  # a fraction of the steps (< 1) or a number of steps
    scheduler: str = "cosine"
    # Rows held out for an eval loss: a fraction, 0 for none, or None (auto: held_out_rows's rule).
    eval_split: float | None = None
    # Checkpoints (adapter, optimizer, scheduler, RNG) for resume, whichever comes first: every save_steps steps
    # (0: every 10 % of the steps) and every save_minutes minutes of training (0: no time limit). The newest
    # save_total_limit complete ones are kept (the newest complete one is never deleted); Stop always saves one.
    save_steps: int = 0
    save_minutes: float = 10.0
    save_total_limit: int = 3
    seed: int = 42
    gradient_checkpointing: bool | None = None  # None: off when the run fits without it (GPU), off on CPU
    # Padding-free: rows packed into sequences of at most max_length tokens (studio.train.packing; batch_size then counts
    # those), a batch becomes one row with per-sequence positions.
    packing: bool = False
    liger: bool = False  # Liger kernels (fused linear cross-entropy: no 152k-wide logits in memory)
    fused_lora: bool = True  # studio.train.fastlora: PEFT's LoRA math in two fused matmul-adds (same result)
    # Checkpointed layer inputs in pinned CPU memory instead of the GPU (studio.train.offload). None, like
    # gradient_checkpointing=None: the estimate's fastest setting that fits the GPU (memory_settings).
    offload_checkpoints: bool | None = None
    # QLoRA: PEFT's k-bit preparation (fp32 norms, embeddings and head). Off: measured on the 7B at 4096
    # tokens it costs 3.1 GiB and 2.5 % of the speed (docs/benchmarks.md); norms stay bf16 like the rest.
    qlora_upcast: bool = False
    # varlen (default): on a GPU, PyTorch's flash kernel called per sequence (studio.attention) for packed rows and
    # rows without padding — 1.7–1.9× on the packed mix, and no per-length cost on unpadded rows (docs/benchmarks.md);
    # padded batches go through SDPA with flash first. flash | cudnn | efficient | auto: SDPA alone, with that
    # backend first (auto: PyTorch's own order).
    attention: str = "varlen"
    report_to: list[str] = field(default_factory=list)  # tensorboard | wandb | trackio, when installed

    @property
    def lr(self) -> float:
        if self.learning_rate:
            return self.learning_rate
        return QLORA_LR if self.method == "qlora" else LORA_LR

    def validate(self) -> None:
        problems = []
        if self.method not in ("lora", "qlora"):
            problems.append(f"method must be lora or qlora, not {self.method!r}")
        if self.attention not in SDPA_BACKENDS:
            problems.append(f"attention must be one of {', '.join(SDPA_BACKENDS)}, not {self.attention!r}")
        if self.target_modules not in ("all-linear", "attention"):
            problems.append("target_modules must be all-linear or attention")
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.save_steps < 0 or self.save_minutes < 0:
            problems.append("save_steps and save_minutes must be 0 (auto / no time limit) or more")
        if self.save_total_limit < 1:
            problems.append(f"save_total_limit must be at least 1, got {self.save_total_limit}")
        if self.max_steps <= 0 and self.epochs <= 0:
            problems.append("set epochs > 0 or max_steps > 0")
        if self.eval_split is not None and not 0 <= self.eval_split < 0.5:
            problems.append(f"eval_split must be in [0, 0.5), got {self.eval_split}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.liger and importlib.util.find_spec("liger_kernel") is None:
            problems.append("Liger kernels need the liger-kernel package (pip install liger-kernel)")
        missing = [name for name in self.report_to if name not in available_trackers()]
        if missing:
            problems.append(f"experiment tracking with {', '.join(missing)} needs its package installed "
                            f"(pip install {' '.join(TRACKERS.get(name, name) for name in missing)})")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> dict:
        return {**asdict(self), "learning_rate": self.lr}

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


# Experiment trackers the Trainer can report to, by the package each needs; off unless chosen.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def available_trackers() -> list[str]:
    return [name for name, package in TRACKERS.items() if importlib.util.find_spec(package) is not None]


# Presets: the seed's advice for the real bases, and a fast one for the demo model on CPU. The real bases pack
# rows into sequences of up to max_length tokens (padding-free): a step costs the memory of one max_length row,
# as the seed's one row a step did, but carries about max_length tokens instead of one row's (R1 rows average
# ≈ 1.5k): on the H200, 7B, such data ran at 13,584 tokens/s packed against 5,270 one row a step
# (docs/benchmarks.md). 4 packs an update ≈ the seed's 8 rows in tokens.
R1_BATCHING = dict(batch_size=1, grad_accum=4, packing=True)
PRESETS = {
    "R1-Distill LoRA (seed advice)": dict(method="lora", learning_rate=LORA_LR, lora_r=16, lora_alpha=32,
                                          max_length=DEFAULT_MAX_LENGTH, epochs=2, **R1_BATCHING),
    "R1-Distill QLoRA (seed advice)": dict(method="qlora", learning_rate=QLORA_LR, lora_r=16, lora_alpha=32,
                                           max_length=DEFAULT_MAX_LENGTH, epochs=2, **R1_BATCHING),
    # 152 steps over the 600-row demo set. Measured at the default sampling (temperature 0.6, top-p 0.95, seeds
    # 0-3) on the 50 held-out prompts: the LoRA closes its reasoning and boxes a whole answer in 50 of 50 (the base
    # in 0) and matches the reference in 40-44 (the base in 43-46). A run takes ≈ 40 s on 2 quiet CPU cores (5 min
    # when other work kept them busy). Tiny-model values: the R1-Distill presets above are for the real bases.
    "Demo model on CPU (fast)": dict(method="lora", learning_rate=2e-3, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                                     max_length=512, batch_size=16, grad_accum=1, epochs=4, warmup=0.03),
}
DEMO_PRESET = "Demo model on CPU (fast)"


def default_config(data: str, output: str, model: str | None = None, **overrides) -> TrainConfig:
    """A config with the preset that suits the model: the demo preset for `demo`, the seed's otherwise."""
    model = model or DEFAULT_MODEL
    method = overrides.get("method") or "lora"
    preset = PRESETS[DEMO_PRESET] if model == DEMO_MODEL else PRESETS[
        "R1-Distill QLoRA (seed advice)" if method == "qlora" else "R1-Distill LoRA (seed advice)"]
    values = {**preset, **{key: value for key, value in overrides.items() if value is not None}}
    values.setdefault("liger", liger_by_default())
    return TrainConfig(data=data, output=output, model=model, **values)


def liger_by_default() -> bool:
    """Measured on the H200: Liger's fused cross-entropy saves 5.8 GiB and 8 % time on the 7B at 4096
    tokens (docs/benchmarks.md), so a GPU run uses it whenever the package is installed."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class PreparedData:
    train: "TrainingRows"
    eval: "TrainingRows"
    rows_read: int
    rows_left_out: int  # rows with errors
    rows_truncated: int
    reused: bool = False  # the tokens were prepared already (an earlier run or the Data tab's check)
    cache: str = ""  # the prepared set's folder
    not_read: str | None = None  # what of the source the dataset limits left unread (None: all of it)


def prepare_data(config: TrainConfig, tokenizer) -> PreparedData:
    """Read any file the validator reads, leave out rows with errors, encode with the reasoning kept — once per
    file, mapping and tokenizer (studio.data.prepared: memory-mapped on disk, reused by every later run)."""
    from studio.data.prepared import prepared_for_training
    from studio.train.rows import TrainingRows

    prepared, reused = prepared_for_training(config.data, config.mapping or None, tokenizer)
    meta = prepared.meta
    if not len(prepared):
        raise ValueError(_no_row_to_train_on(config.data, meta["rows_read"], meta["rows_left_out"]))
    positions = list(range(len(prepared)))
    random.Random(config.seed).shuffle(positions)  # the rows in file order, shuffled as the run's seed says
    held_out = held_out_rows(config.eval_split, len(positions))
    truncated = int((prepared.lengths() > config.max_length).sum())
    return PreparedData(TrainingRows(prepared, positions[held_out:], config.max_length),
                        TrainingRows(prepared, positions[:held_out], config.max_length), meta["rows_read"],
                        meta["rows_left_out"], truncated, reused, str(prepared.folder), meta.get("not_read"))


def _no_row_to_train_on(data: str, rows: int, errors: int) -> str:
    return (f"{data}: no row without errors to train on ({rows} rows, {errors} with errors). Check it in the Data "
            "tab or with `python -m studio validate`.")


# --------------------------------------------------------------------------------------------------
# Before a run is made: what cannot run here (the Train tab's badge, its Start, and `studio train` say the same)

_DATA_CHECKS: "OrderedDict[tuple, str | None]" = OrderedDict()  # (source, mapping, size, mtime) -> refusal
_DATA_CHECKS_KEPT = 16
_DATA_CHECKS_LOCK = threading.Lock()


def data_refusal(data: str, mapping: dict | None = None) -> str | None:
    """Why a run cannot train on `data`, read as the run would read it (a folder, a missing file, an unreadable
    one, or no row without errors), or None when it can. A Hub dataset id is left to the run (the Hub may take a
    while to answer). The answer for a file is kept while its size and modification time stay the same, so the
    badge reads a file once, not at every change of a setting."""
    from studio.data.readers import DatasetUnreadable, looks_like_hub_id
    from studio.data.validate import validate

    source = str(data or "").strip()
    try:
        stat = Path(source).expanduser().stat() if source else None
    except (OSError, ValueError):
        stat = None
    if stat is None and looks_like_hub_id(source):
        return None
    key = (source, json.dumps(mapping or {}, sort_keys=True), stat and stat.st_size, stat and stat.st_mtime_ns)
    with _DATA_CHECKS_LOCK:
        if stat is not None and key in _DATA_CHECKS:
            _DATA_CHECKS.move_to_end(key)
            return _DATA_CHECKS[key]
    try:
        report = validate(source, lengths=False, overrides=mapping or None)
        errors = len(report.error_rows)
        refusal = None if report.rows > errors else _no_row_to_train_on(source, report.rows, errors)
        del report
    except (DatasetUnreadable, ValueError, OSError) as error:
        refusal = str(error)
    if stat is not None:
        with _DATA_CHECKS_LOCK:
            _DATA_CHECKS[key] = refusal
            while len(_DATA_CHECKS) > _DATA_CHECKS_KEPT:
                _DATA_CHECKS.popitem(last=False)
    return refusal


def device_refusal(config: TrainConfig, device=None) -> str | None:
    """Why `config` cannot run on `device` (this machine's when None) by the estimate: QLoRA without CUDA, or a
    run the estimate says will not fit its memory; None when it can, or when the model's size is unknown without
    a download (the run then finds out)."""
    from studio.train.estimate import estimate_config

    try:
        estimate = estimate_config(config, device)
    except ValueError:
        return None
    return estimate_refusal(estimate)


def estimate_refusal(estimate) -> str | None:
    """device_refusal's words for an estimate already made (studio.train.estimate.Estimate)."""
    from studio.train.estimate import UNSUPPORTED, WILL_NOT_FIT

    if estimate.verdict == UNSUPPORTED:
        return estimate.summary()
    if estimate.verdict == WILL_NOT_FIT:
        return " ".join(part for part in (
            f"This run needs ≈ {estimate.total_gib:.1f} GiB and {estimate.device} has "
            f"{estimate.device_memory_gib:.0f} GiB: it will not fit.", estimate.hint()) if part)
    return None


def start_refusal(config: TrainConfig, device=None, *, check_device: bool = True) -> str | None:
    """Why `config` cannot run here, before anything of a run is made (None when it can): the device's reason
    first (`check_device`: off where the GPU is only lent inside the run's own call, on ZeroGPU), then the
    data's. The Train tab's badge shows these same words."""
    return (device_refusal(config, device) if check_device else None) or data_refusal(config.data, config.mapping)


def make_collator(tokenizer, packing: bool, one_row: bool = False, sequence_offsets: bool = False):
    """Pad a batch (labels with -100), or pack it padding-free.

    Packing concatenates the batch (its packs' rows, studio.train.packing) into one row and restarts `position_ids`
    at each sequence; with no attention mask, the attention kernels keep every sequence to itself, so no
    token is spent on padding and the loss is the same token mean as unpacked (a test checks this). With
    `one_row` (batch size 1) there is no padding, so the all-ones mask is dropped: the model then skips
    building and checking a mask, which measured 2.6 % of the step on the 7B (docs/benchmarks.md). `sequence_offsets` adds each packed sequence's
    offsets, which varlen attention (studio.attention) reads.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    from studio.data.template import IGNORE_INDEX

    if packing:
        from studio.train.packing import flatten_packs

        flatten = DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=sequence_offsets)
        return lambda features: flatten(flatten_packs(features))
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    if not one_row:
        return pad

    def without_mask(features):
        batch = pad(features)
        if len(features) == 1:  # only a single row is sure to have no padding
            batch.pop("attention_mask", None)
        return batch

    return without_mask


def planned_steps(config: TrainConfig, train_rows: int) -> int:
    """The optimizer steps the run will take: max_steps, or the epochs over `train_rows` rows (or packs) as the
    Trainer counts them (a last short batch counts, a last short accumulation too)."""
    if config.max_steps > 0:
        return config.max_steps
    batches = math.ceil(train_rows / config.batch_size)
    per_epoch = max(1, batches // config.grad_accum + int(batches % config.grad_accum > 0))
    return max(1, math.ceil(config.epochs * per_epoch))


# A checkpointing choice (CLI flag, Train tab radio) -> (gradient_checkpointing, offload_checkpoints); None: auto.
CHECKPOINTING = {"auto": (None, None), "on": (True, False), "offload": (True, True), "off": (False, False)}


def memory_settings(config: TrainConfig, device) -> tuple[bool, bool]:
    """(gradient checkpointing, offload): what the config says, and for `None` (auto) on a GPU the fastest
    measured setting that fits its memory (studio.train.estimate.plan_memory: no recompute when it fits — about
    40 % faster — then checkpointing, then checkpointing with the saved inputs in CPU memory)."""
    if device.kind != "cuda":
        return bool(config.gradient_checkpointing), False  # CPU: activations are in system memory anyway
    from studio.train.estimate import estimate_config

    try:
        planned = estimate_config(config, device)  # keeps the explicit settings, plans the `None` ones
    except ValueError:  # the shape is unknown without a download: the safe setting
        checkpointing = config.gradient_checkpointing is not False
        return checkpointing, checkpointing and bool(config.offload_checkpoints)
    return planned.gradient_checkpointing, planned.offload_checkpoints


# --------------------------------------------------------------------------------------------------
# Failures: a readable cause and a suggested fix


def explain_failure(error: BaseException, config: TrainConfig) -> tuple[str, str]:
    """(cause, fix) for the status file and the UI."""
    from studio.models import ModelNotFound, UnsupportedSetup
    from studio.data.readers import DatasetUnreadable

    text = f"{type(error).__name__}: {error}"
    if "out of memory" in str(error).lower() or type(error).__name__ == "OutOfMemoryError":
        fix = (f"Lower batch_size ({config.batch_size}) or max_length ({config.max_length}), keep gradient "
               "checkpointing on" + (", or switch to QLoRA (4-bit weights)" if config.method == "lora" else ""))
        return "The GPU ran out of memory.", fix + "."
    if type(error).__name__ == "NonFiniteLoss":  # studio.train.trainer's; not imported here for a name check
        return str(error), ("Lower the learning rate (try half), keep bf16 rather than fp16, and check the data "
                            "for empty or huge rows.")
    if isinstance(error, (DatasetUnreadable, ModelNotFound, UnsupportedSetup, ValueError)):
        return str(error), "Fix the setting named above and start again."
    return text, "See the traceback in status.json; if it persists, try the defaults of the preset."


# --------------------------------------------------------------------------------------------------
# The job


def claim_run(folder: RunFolder, resume: bool):
    """Take the run folder's lock (studio.runs.RunLock), and for a resume check under it that the run can be
    resumed; JobBusy / ResumeRefused touch nothing of the run."""
    if resume:  # before the lock: refusing must not even create run.lock
        refusal = folder.resume_refusal()
        if refusal:
            raise ResumeRefused(refusal)
    try:
        lock = folder.acquire()
    except RunLocked as error:
        raise JobBusy(str(error)) from None
    refusal = folder.resume_refusal(locked_by_caller=True) if resume else None
    if refusal:  # it changed while we waited for the lock (another process finished it)
        lock.release()
        raise ResumeRefused(refusal)
    folder.clear_stop_request()  # left by a process that is gone: with the lock taken, it is stale
    return lock


class TrainingJob:
    """One run: `run()` trains in the calling thread, `start()` in a background thread."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, show_progress_bar: bool = False,
                 callbacks: list | None = None, owner: str | None = None, run_lock=None):
        config.validate()
        # On a shared server, the token of the browser session that started the run (studio.spaces.Visitors):
        # written into status.json, so that only that session lists, chats with, resumes and stops it.
        self.owner = owner
        self.extra_callbacks = list(callbacks or [])  # e.g. the profiler of `studio bench --profile`
        self.config = config
        self.resume = resume
        self.folder = RunFolder(Path(config.output))
        self.show_progress_bar = show_progress_bar
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._metrics: list[dict] = []
        self.status: dict = {"state": "starting", "message": "Starting"}
        self.thread: threading.Thread | None = None
        self.data_summary: dict = {}
        self._failure: BaseException | None = None  # set by the callback (e.g. NaN loss)
        self._tokenizer = None
        # The run folder's lock (studio.runs.RunLock), held while training; given when the caller took it and
        # checked under it that the run may start (studio.train.launch hands it to a child process).
        self._run_lock = run_lock
        self.elapsed_before = 0.0  # training seconds before this process took over (a resume's checkpoint's)

    # control ------------------------------------------------------------------------------------
    def start(self) -> "TrainingJob":
        """Train in a background thread; raises JobBusy while another run is going (in this process, or in
        another one on this run's folder) and ResumeRefused for a run that cannot be resumed."""
        if not _ONE_RUN.acquire(blocking=False):
            raise JobBusy("Another training run is going; stop it or wait for it to finish, then start again.")
        try:
            self._claim()
        except BaseException:
            _ONE_RUN.release()
            raise
        self.thread = threading.Thread(target=self._run_and_release, name=f"train-{self.folder.name}", daemon=True)
        self.thread.start()
        return self

    def _run_and_release(self) -> None:
        try:
            self.run()
        finally:
            _ONE_RUN.release()

    def _claim(self) -> None:
        if self._run_lock is None:
            self._run_lock = claim_run(self.folder, self.resume)

    def _release(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def stop(self) -> None:
        """Ask for a graceful stop; the training thread saves and writes the status at the next step."""
        self._stop.set()
        self.status = {**self.status, "message": "Stopping at the end of this step…"}

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set() or self.folder.stop_requested()

    def wait(self, timeout: float | None = None) -> dict:
        if self.thread:
            self.thread.join(timeout)
        return self.status

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # metrics ------------------------------------------------------------------------------------
    def metrics(self, since: int = 0) -> list[dict]:
        with self._lock:
            return list(self._metrics[since:])

    def record_metrics(self, row: dict) -> None:
        with self._lock:
            self._metrics.append(row)
        self.folder.append_metrics(row)

    def _set_status(self, state: str, **fields) -> None:
        self.status = self.folder.write_status(state, **fields)

    # the work -----------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train in this thread; JobBusy / ResumeRefused (raised before the run is touched) when it cannot."""
        self._claim()
        try:
            return self._run_claimed()
        finally:  # after the last status: a reader never sees the lock free while the status says running
            self._release()

    def _prepare_resume(self) -> tuple[Path | None, str]:
        """The checkpoint to resume from (None: the crash came before the first one, so from step 0) and the
        words for the status; drops the broken checkpoints and the metrics rows past the checkpoint's step."""
        checkpoint, passed_over = self.folder.resume_point()
        removed = self.folder.remove_incomplete_checkpoints()
        # A kill between a checkpoint's save and the pruning after it leaves one too many: the bound holds again
        # from here (a run resumed at max_steps ends without saving, so nothing else would prune).
        self.folder.prune_checkpoints(self.config.save_total_limit)
        step = checkpoint_step(checkpoint) if checkpoint else 0
        rows = self.folder.rewrite_metrics(step)  # redone steps replace theirs; a cut last line goes
        with self._lock:
            self._metrics = rows
        at_step = [row for row in rows if row.get("step") == step and "elapsed_s" in row]
        self.elapsed_before = float((at_step or rows or [{}])[-1].get("elapsed_s") or 0.0) if step else 0.0
        skipped = f"; passed over {', '.join(passed_over)}" if passed_over else ""
        if checkpoint:
            words = f"resumed from {checkpoint.name}{skipped}"
        else:
            words = f"no complete checkpoint to resume from{skipped}: trained again from step 0"
        if removed:
            words += f" (deleted the incomplete {', '.join(removed)})"
        self._set_status(RUNNING, resumed_from=checkpoint.name if checkpoint else None, passed_over=passed_over)
        return checkpoint, words

    def _run_claimed(self) -> dict:
        started = time.time()
        config = self.config
        checkpoint, resumed = None, ""
        try:
            if self.resume:
                started = self.folder.read_status().get("started") or started
                checkpoint, resumed = self._prepare_resume()
            # The status (with its owner) before the config: a folder is listed as a run once config.json exists.
            self._set_status(RUNNING, started=started, message="Loading data and model", max_steps=None,
                             step=checkpoint_step(checkpoint) if checkpoint else 0,
                             cause=None, fix=None, traceback=None, ended=None,
                             **({"owner": self.owner} if self.owner else {}))
            self.folder.write_config(config.to_json())  # a resume's: the settings it goes on with (overrides too)
            from studio.train.trainer import NothingLeftToTrain

            trainer = self._build_trainer()
            resumed = f" ({resumed})" if resumed else ""
            self._set_status(RUNNING, message=f"Training{resumed}")
            try:
                with prefer_sdpa_backend(config.attention):
                    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            except NothingLeftToTrain as done:  # the checkpoint's weights are loaded: they are the adapter
                self._save_adapter(trainer.model)
                self._set_status(COMPLETED, step=done.step, max_steps=done.max_steps, ended=time.time(),
                                 message=f"Finished {done.step} steps{resumed}: {checkpoint.name} was already at "
                                         f"max_steps {done.max_steps}, nothing left to train; adapter saved in "
                                         f"{self.folder.adapter_dir}.")
                return self.status
            if self._failure:
                raise self._failure
            self._save_adapter(trainer.model)
            state = STOPPED if self.stop_requested else COMPLETED
            step = trainer.state.global_step
            message = (f"Stopped at step {step}{resumed}; adapter saved — Resume continues from here."
                       if state == STOPPED
                       else f"Finished {step} steps{resumed}; adapter saved in {self.folder.adapter_dir}.")
            self._set_status(state, message=message, step=step, ended=time.time())
        except BaseException as error:  # everything must end in a status the user can read
            cause, fix = explain_failure(error, config)
            self._set_status(FAILED, message=f"Failed: {cause}", cause=cause, fix=fix, ended=time.time(),
                             traceback=traceback.format_exc(limit=8))
            if isinstance(error, KeyboardInterrupt):
                raise
        finally:  # a stop request has been answered (or the run ended anyway): no stale marker in the folder
            self.folder.clear_stop_request()
        return self.status

    def _save_adapter(self, model) -> None:
        """The adapter (PEFT format, with the tokenizer) into adapter/, swapped in whole: written beside it, then
        renamed, so a kill while saving never leaves a half-written adapter/ behind."""
        import shutil

        final = self.folder.adapter_dir
        fresh = final.with_name(f".{final.name}.{os.getpid()}.new")
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        model.save_pretrained(fresh)
        self._tokenizer.save_pretrained(fresh)
        if final.exists():
            final.rename(old)
        fresh.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _build_trainer(self):
        from peft import LoraConfig, get_peft_model
        from transformers import PrinterCallback, TrainingArguments

        from studio.models import ALL_LINEAR, ATTENTION_ONLY, detect_device, load_base_for_training, load_tokenizer
        from studio.train.trainer import CheckpointCallback, MetricsCallback, StudioTrainer, auto_save_steps

        config = self.config
        device = detect_device()
        checkpointing, offload = memory_settings(config, device)
        self._tokenizer = tokenizer = load_tokenizer(config.model)
        data = prepare_data(config, tokenizer)
        self.data_summary = {"rows_read": data.rows_read, "rows_left_out": data.rows_left_out,
                             "rows_truncated": data.rows_truncated, "train_rows": len(data.train),
                             "eval_rows": len(data.eval),
                             "eval_words": eval_split_words(config.eval_split, len(data.train) + len(data.eval),
                                                            len(data.eval)),
                             "tokens_reused": data.reused,
                             "prepared": data.cache, "not_read": data.not_read}
        self._set_status(RUNNING, message=f"Loading {config.model} on {device.describe()} "
                                          f"({memory_setting_words(checkpointing, offload)})",
                         data=self.data_summary,
                         device=device.describe(), gradient_checkpointing=checkpointing, offload_checkpoints=offload)
        model = load_base_for_training(config.model, config.method, device, checkpointing,
                                       offload=offload, upcast=config.qlora_upcast, attention=config.attention)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=ALL_LINEAR if config.target_modules == "all-linear" else ATTENTION_ONLY,
                          bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        if config.fused_lora:
            from studio.train.fastlora import enable_fused_lora

            enable_fused_lora(model)
        collator = make_collator(tokenizer, config.packing, one_row=config.batch_size == 1,
                                 sequence_offsets=config.attention == "varlen")
        train = data.train
        if config.packing:
            from studio.train.packing import PackedRows

            train = PackedRows(train, config.max_length)
        steps = planned_steps(config, len(train))
        arguments = TrainingArguments(
            output_dir=str(self.folder.path),
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum,
            learning_rate=config.lr,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps if config.max_steps > 0 else -1,
            warmup_steps=config.warmup,
            lr_scheduler_type=config.scheduler,
            logging_steps=1,
            # Steps: the interval is set when training begins (CheckpointCallback: N, or 10 % of the steps) and the
            # Trainer saves at the end too. Pruning is the callback's (it never deletes the only complete one).
            save_strategy="steps",
            save_steps=config.save_steps or auto_save_steps(steps),
            save_total_limit=None,
            # Every tenth of the run rather than every epoch: a run of one or two epochs gets a curve, not a dot.
            eval_strategy="steps" if data.eval else "no",
            eval_steps=max(1, steps // EVALS_PER_RUN),
            bf16=device.kind == "cuda" and device.bf16,
            use_cpu=device.kind == "cpu",
            seed=config.seed,
            report_to=config.report_to or "none",
            disable_tqdm=not self.show_progress_bar,
            dataloader_num_workers=0,
            # Counted by the Trainer on the real batches; packed and one-row batches have no padding.
            include_num_input_tokens_seen="all" if config.packing or config.batch_size == 1 else "non_padding",
            remove_unused_columns=False,  # checkpointing is set up on the model itself (models.py)
            use_liger_kernel=config.liger,
            # The Trainer's NaN filter reads the loss back after every backward: a sync that leaves the GPU
            # idle while the host does the step's bookkeeping. MetricsCallback stops a non-finite loss itself.
            logging_nan_inf_filter=False,
        )
        trainer = StudioTrainer(model=model, args=arguments, train_dataset=train,
                                eval_dataset=data.eval or None, data_collator=collator,
                                callbacks=[MetricsCallback(self),
                                           CheckpointCallback(self.folder, config.save_steps, config.save_minutes,
                                                              config.save_total_limit),
                                           *self.extra_callbacks])
        if not self.show_progress_bar:
            trainer.remove_callback(PrinterCallback)  # metrics go to the store, not to stdout
        return trainer
