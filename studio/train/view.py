"""What the Train tab shows, computed from a job's metrics and the run history (no gradio)."""

from __future__ import annotations

import time

import pandas as pd

HISTORY_COLUMNS = ["run", "state", "model", "method", "step", "first loss", "last loss", "started", "adapter"]


def _frame(columns: dict) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(values, dtype=dtype) for name, (values, dtype) in columns.items()})


def loss_frame(metrics: list[dict]) -> pd.DataFrame:
    """Long format (step, value, series) so one plot draws loss and eval loss in two colours."""
    steps, values, series = [], [], []
    for row in metrics:
        for key in ("loss", "eval_loss"):
            if key in row:
                steps.append(row["step"])
                values.append(row[key])
                series.append(key.replace("_", " "))
    return _frame({"step": (steps, "int64"), "value": (values, "float64"), "series": (series, "object")})


def series_frame(metrics: list[dict], key: str) -> pd.DataFrame:
    rows = [(row["step"], row[key]) for row in metrics if row.get(key) is not None]
    return _frame({"step": ([r[0] for r in rows], "int64"), key: ([r[1] for r in rows], "float64")})


# The three live plots: the frame column drawn, its axis title in words with units, its number format, and what
# an empty plot says will appear.
PLOTS = {
    "loss": ("value", "Loss (cross-entropy, nats per token)", ".3~g",
             "The loss appears here after the first logged step (the eval loss too, with an eval split)."),
    "learning_rate": ("learning_rate", "Learning rate", ".1e",
                      "The learning rate appears here after the first logged step."),
    "tokens_per_s": ("tokens_per_s", "Tokens per second", ",.0f",
                     "The training speed appears here after the first logged step."),
}
PLOT_TITLES = {"loss": "Loss", "learning_rate": "Learning rate", "tokens_per_s": "Training speed"}


def empty_plot_label(plot: str) -> str:
    """An empty plot's label: its title and what will appear in it (an empty plot draws only an icon)."""
    return f"{PLOT_TITLES[plot]} · {PLOTS[plot][3]}"


def plot_update(frame: pd.DataFrame, plot: str) -> dict:
    """What one live plot shows for `frame` (keyword arguments of the plot's update): no value and the words
    of what will appear when it is empty; axis limits around a lone value when the frame holds one (a plot
    with a single point, or a flat line, gets a zero-height axis whose ticks print every decimal)."""
    column = PLOTS[plot][0]
    if not len(frame):
        return {"value": None, "label": empty_plot_label(plot)}
    update = {"value": frame, "label": PLOT_TITLES[plot], "x_lim": None, "y_lim": None}
    low, high = float(frame[column].min()), float(frame[column].max())
    if high - low <= 1e-9 * max(abs(high), 1e-12):
        update["y_lim"] = [0.0, 2 * high] if high > 0 else [high - 1.0, high + 1.0]
    first, last = int(frame["step"].min()), int(frame["step"].max())
    if first == last:  # a span of a few steps: whole-number ticks around the point
        update["x_lim"] = [max(0, first - 5), max(0, first - 5) + 10]
    return update


def eta_seconds(rows: list[dict], max_steps: int, window: int = 20) -> float | None:
    """Seconds left for a run at `rows[-1]`'s step, from the rate of its latest `window` steps.

    `rows`: this process's logged training rows in order (step and time). The time before the first of them
    (loading, the first step's one-time costs) is never counted, so one step in there is no rate yet: None.
    A recent window follows a rate that settles or changes (packing, another job on the device)."""
    if not rows:
        return None
    last = rows[-1]
    left = max(0, max_steps - last["step"])
    if not left:
        return 0.0
    recent = rows[-(window + 1):]
    steps = last["step"] - recent[0]["step"]
    if steps <= 0:
        return None
    return round((last["time"] - recent[0]["time"]) / steps * left, 1)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def progress_html(status: dict) -> str:
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    fraction = step / total if total else 0.0
    eta = "—"
    if status.get("state") == "running":  # no rate before the second step (the first one's costs are not counted)
        eta = format_seconds(status["eta_s"]) if status.get("eta_s") is not None else "after a few steps"
    return (f'<div class="studio-progress"><div class="studio-progress-bar" style="width:{fraction * 100:.1f}%"></div>'
            f'</div><div class="studio-progress-text">step {step:,} / {total:,} · {fraction * 100:.0f}% · ETA {eta}</div>')


STATE_ICONS = {"running": "⏳", "completed": "✅", "stopped": "⏸️", "failed": "❌", "interrupted": "⚠️"}


# What to do next with a run that ended, by its state (a failed run's is the fix its status gives).
NEXT_STEP = {
    "completed": ("**Next:** open the **3. Chat** tab and pick **{name}** as the fine-tune: ask base and LoRA the "
                  "same question, or run a batch compare on held-out prompts."),
    "stopped": ("**Next:** select it in the history below and press **Resume** to go on, or chat with its adapter "
                "in the **3. Chat** tab (pick **{name}**)."),
    "interrupted": ("The studio stopped while this run trained. **Next:** select it in the history below and press "
                    "**Resume**: it goes on from its newest checkpoint."),
}


def status_markdown(status: dict, run_name: str | None) -> str:
    """The status line: the live run's, or (`last_run` in the status) the newest run on disk after a restart,
    with where it stopped and what to do next."""
    if not status:
        return "No run yet: choose a dataset and press **Start**."
    state = status.get("state", "")
    icon = STATE_ICONS.get(state, "")
    if status.get("last_run"):
        step, total = status.get("step") or 0, status.get("max_steps")
        where = f"at step {step:,} of {total:,}" if total else f"at step {step:,}"
        text = f"{icon} Last run **{run_name}** — {state} {where}: {status.get('message', '')}"
    else:
        text = f"{icon} **{run_name or ''}** — {state}: {status.get('message', '')}"
    if state == "failed" and status.get("fix"):
        text += f"\n\n**What to do:** {status['fix']}"
    if state in NEXT_STEP:  # a failed run's next step is its fix, above
        text += "\n\n" + NEXT_STEP[state].format(name=run_name)
    data = status.get("data")
    if data:
        eval_words = f" ({data['eval_words']})" if data.get("eval_words") else ""
        text += (f"\n\nData: {data['train_rows']:,} train rows, {data['eval_rows']:,} eval{eval_words}; "
                 f"{data['rows_left_out']:,} rows with errors left out; {data['rows_truncated']:,} cut at max_length"
                 + ("; tokens reused from the prepared cache (not tokenized again)." if data.get("tokens_reused")
                    else "."))
        if data.get("not_read"):
            text += f"\n\n⚠️ Not all of the file was read: {data['not_read']}."
    return text


def history_frame(runs: list[dict]) -> pd.DataFrame:
    rows = [[run["name"], run["state"], run["model"], run["method"], run["step"],
             None if run["first_loss"] is None else round(run["first_loss"], 4),
             None if run["last_loss"] is None else round(run["last_loss"], 4),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(run["started"])) if run.get("started") else "",
             "yes" if run["has_adapter"] else ""] for run in runs]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


BADGE_STYLES = {"fits": ("✅", "fits on your device"), "tight": ("⚠️", "tight: may run out of memory"),
                "will not fit": ("⛔", "will not fit"), "unsupported": ("⛔", "not supported here"),
                "unknown": ("❔", "memory unknown")}


def estimate_markdown(config, data_refusal: str | None = None, device=None) -> str:
    """The memory/time estimate as a badge line plus the breakdown, for the settings as they stand, on `device`
    (this machine's when None). The verdict is said once, in the badge; the small print says how far to trust
    the figures on this kind of device. What cannot run here leads the badge with the words Start refuses with:
    the device's reason (studio.train.job.estimate_refusal), else `data_refusal` (the dataset's,
    studio.train.job.data_refusal)."""
    from studio.train.estimate import estimate_config, memory_setting_words
    from studio.train.job import estimate_refusal

    try:
        estimate = estimate_config(config, device)
    except ValueError as error:
        if data_refusal:
            return f"**⛔ cannot start** — {data_refusal}"
        return f"❔ No estimate: {error}"
    icon, words = BADGE_STYLES.get(estimate.verdict, ("", estimate.verdict))
    parts = estimate.breakdown_gib
    detail = " · ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in parts.items() if value >= 0.05)
    memory = memory_setting_words(estimate.gradient_checkpointing, estimate.offload_checkpoints)
    small = f"<small>GiB: {detail} · on {estimate.device}, {memory}. {estimate.accuracy_note()}</small>"
    refusal = estimate_refusal(estimate)
    if refusal:
        return f"**{icon} {words}** — {refusal}\n\n{small}"
    if data_refusal:
        return f"**⛔ cannot start** — {data_refusal}\n\n{small}"
    return f"**{icon} {words}** — {estimate.summary(with_verdict=False)}\n\n{small}"  # the badge said the verdict


def cache_markdown(info: dict, shared: bool) -> str:
    """The prepared-tokens cache in one line: how many sets, how big, where (not where on a shared server)."""
    size = f"{info['bytes'] / 2**20:,.1f} MiB"
    where = "" if shared else f" in `{info['path']}`"
    text = (f"**Prepared tokens:** {info['sets']} set(s), {size}{where} — each dataset is tokenized once per "
            "tokenizer; later runs, resumes and new settings reuse it (the Data tab's length check fills it too).")
    if shared:
        text += " Shared by content on this server: a set is only ever found by uploading the same bytes."
    return text
