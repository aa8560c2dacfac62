"""The transformers Trainer as the studio runs it: a lighter step, a callback that feeds the run folder, and one
that keeps a checkpoint on schedule (every N steps and every M minutes, whichever comes first).

TrainingJob (studio.train.job) builds both, importing this module only when a run starts (the Trainer's imports
take seconds, which the app's start-up should not wait for); nothing here imports gradio.
"""

from __future__ import annotations

import collections
import math
import time

from transformers import Trainer, TrainerCallback

from studio.runs import RUNNING
from studio.train.view import eta_seconds

ETA_WINDOW = 20  # steps whose rate the ETA follows


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops with this as its cause."""


class NothingLeftToTrain(Exception):
    """A resumed run's checkpoint is already at max_steps: raised before a step is taken (the Trainer would
    otherwise take one more), so the job saves the checkpoint's adapter and ends."""

    def __init__(self, step: int, max_steps: int):
        super().__init__(f"already at step {step} of {max_steps}")
        self.step, self.max_steps = step, max_steps


class StudioTrainer(Trainer):
    """The Trainer with two host-side costs of each step taken out.

    - Its FLOP count for the logs walks every parameter of the model on each micro-batch (≈ 3 ms for the
      7B with its LoRA layers on a 2-core CPU); the count is taken once here.
    - Its token count moves the count to the GPU and reads it back right after the backward is queued: a
      sync that leaves the GPU idle while the host then clips, steps and logs. When every token counts
      (packed or one-row batches) one process takes the count from the batch's shape instead, which needs
      no sync, wherever the batch is; a padding count on the GPU is the Trainer's own. (A private hook of
      transformers, pinned in requirements.txt; with several processes the Trainer's count, which adds up
      all ranks, runs.)
    """

    _parameter_count: int | None = None

    def floating_point_ops(self, inputs) -> int:
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._parameter_count is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._parameter_count

    def _track_num_input_tokens(self, inputs):
        ids = inputs.get("input_ids")
        mode = self.args.include_num_input_tokens_seen
        mask = inputs.get("attention_mask") if mode == "non_padding" else None
        if (self.args.world_size > 1 or ids is None or mode not in ("all", "non_padding")
                or (mask is not None and mask.is_cuda)):
            return super()._track_num_input_tokens(inputs)
        self.state.num_input_tokens_seen += ids.numel() if mask is None else int(mask.sum())


class MetricsCallback(TrainerCallback):
    """Metrics into the job's store, stop at the next step, catch a NaN loss."""

    def __init__(self, job: TrainingJob):
        self.job = job
        self.last_time = self.last_tokens = self.start_time = None
        self.window: collections.deque = collections.deque(maxlen=6)
        self.step_times: collections.deque = collections.deque(maxlen=ETA_WINDOW + 1)  # this process's, for the ETA

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps > 0:  # a resume at (or past) the end: no step past max_steps
            raise NothingLeftToTrain(state.global_step, state.max_steps)
        self.start_time = self.last_time = time.time()
        self.last_tokens = state.num_input_tokens_seen
        self.job._set_status(RUNNING, step=state.global_step, max_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if self.job.stop_requested:
            control.should_training_stop = True
            control.should_save = True  # a checkpoint to resume from
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        import torch

        logs = dict(logs or {})
        now = time.time()
        row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), "time": now,
               "tokens_seen": int(state.num_input_tokens_seen)}
        for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
            if key in logs:
                row[key] = float(logs[key])
        if "loss" in row:
            if not math.isfinite(row["loss"]):
                self.job._failure = NonFiniteLoss(f"The loss became {row['loss']} at step {state.global_step}.")
                control.should_training_stop = True
            # Over the last few steps: one step alone swings with its rows' lengths.
            self.window.append((now, state.num_input_tokens_seen))
            (first_time, first_tokens), (last_time, last_tokens) = self.window[0], self.window[-1]
            if len(self.window) == 1:
                first_time, first_tokens = self.last_time, self.last_tokens
            row["tokens_per_s"] = round((last_tokens - first_tokens) / max(last_time - first_time, 1e-9), 1)
        elapsed = now - self.start_time
        row["elapsed_s"] = round(self.job.elapsed_before + elapsed, 1)  # a resumed run goes on from its checkpoint's
        if "loss" in row and (not self.step_times or self.step_times[-1]["step"] != state.global_step):
            self.step_times.append({"step": state.global_step, "time": now})
        # From the latest steps' rate: the first step's one-time costs would make a short run's ETA minutes long.
        row["eta_s"] = eta_seconds(list(self.step_times), state.max_steps, ETA_WINDOW)
        if torch.cuda.is_available():
            row["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if "loss" in row or "eval_loss" in row:
            self.job.record_metrics(row)
        # The message set when training began ("Training", or "… resumed from checkpoint-N") stays.
        self.job._set_status(RUNNING, step=state.global_step, max_steps=state.max_steps, eta_s=row["eta_s"],
                             message=self.job.status.get("message"))
        return control


AUTO_SAVE_FRACTION = 0.1  # save_steps 0: a checkpoint every 10 % of the steps


def auto_save_steps(max_steps: int) -> int:
    """The step interval of save_steps 0: at least every 10 % of the steps (every step for runs under 20)."""
    return max(1, int(max_steps * AUTO_SAVE_FRACTION))


class CheckpointCallback(TrainerCallback):
    """A Trainer checkpoint (adapter, optimizer, scheduler, RNG, trainer state) every `every_steps` steps (0: every
    10 % of the run) and at least every `every_minutes` minutes of training (0: no time limit), whichever comes
    first; after each save the older checkpoints past the newest `keep` complete ones are deleted (never the
    newest complete one). So a kill -9 at any moment loses at most one interval.

    The step interval goes through the Trainer's own save_steps (its state's, set when training begins, so a
    resumed run takes this run's setting rather than the checkpoint's); the time limit sets `should_save`."""

    def __init__(self, folder, every_steps: int = 0, every_minutes: float = 0.0, keep: int = 3):
        self.folder, self.every_steps, self.every_minutes, self.keep = folder, every_steps, every_minutes, keep
        self.last_save = None

    def on_train_begin(self, args, state, control, **kwargs):
        state.save_steps = self.every_steps if self.every_steps > 0 else auto_save_steps(state.max_steps)
        self.last_save = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_minutes > 0 and time.monotonic() - self.last_save >= self.every_minutes * 60:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()
        self.folder.prune_checkpoints(self.keep)
