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
    eta = format_seconds(status.get("eta_s")) if status.get("state") == "running" else "—"
    return (f'<div class="studio-progress"><div class="studio-progress-bar" style="width:{fraction * 100:.1f}%"></div>'
            f'</div><div class="studio-progress-text">step {step:,} / {total:,} · {fraction * 100:.0f}% · ETA {eta}</div>')


STATE_ICONS = {"running": "⏳", "completed": "✅", "stopped": "⏸️", "failed": "❌", "interrupted": "⚠️"}


def status_markdown(status: dict, run_name: str | None) -> str:
    if not status:
        return "No run yet: choose a dataset and press **Start**."
    state = status.get("state", "")
    text = f"{STATE_ICONS.get(state, '')} **{run_name or ''}** — {state}: {status.get('message', '')}"
    if state == "failed" and status.get("fix"):
        text += f"\n\n**What to do:** {status['fix']}"
    data = status.get("data")
    if data:
        text += (f"\n\nData: {data['train_rows']:,} train rows, {data['eval_rows']:,} eval; "
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


def estimate_markdown(config, data_refusal: str | None = None) -> str:
    """The memory/time estimate as a badge line plus the breakdown, for the settings as they stand. What cannot
    run here leads the badge with the words Start refuses with: the device's reason (studio.train.job.
    estimate_refusal), else `data_refusal` (the dataset's, studio.train.job.data_refusal)."""
    from studio.train.estimate import STATED_ERROR, estimate_config, memory_setting_words
    from studio.train.job import estimate_refusal

    try:
        estimate = estimate_config(config)
    except ValueError as error:
        if data_refusal:
            return f"**⛔ cannot start** — {data_refusal}"
        return f"❔ No estimate: {error}"
    icon, words = BADGE_STYLES.get(estimate.verdict, ("", estimate.verdict))
    parts = estimate.breakdown_gib
    detail = " · ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in parts.items() if value >= 0.05)
    memory = memory_setting_words(estimate.gradient_checkpointing, estimate.offload_checkpoints)
    small = f"<small>GiB: {detail} · on {estimate.device}, {memory}. {STATED_ERROR}</small>"
    refusal = estimate_refusal(estimate)
    if refusal:
        return f"**{icon} {words}** — {refusal}\n\n{small}"
    if data_refusal:
        return f"**⛔ cannot start** — {data_refusal}\n\n{small}"
    return f"**{icon} {words}** — {estimate.summary()}\n\n{small}"


def cache_markdown(info: dict, shared: bool) -> str:
    """The prepared-tokens cache in one line: how many sets, how big, where (not where on a shared server)."""
    size = f"{info['bytes'] / 2**20:,.1f} MiB"
    where = "" if shared else f" in `{info['path']}`"
    text = (f"**Prepared tokens:** {info['sets']} set(s), {size}{where} — each dataset is tokenized once per "
            "tokenizer; later runs, resumes and new settings reuse it (the Data tab's length check fills it too).")
    if shared:
        text += " Shared by content on this server: a set is only ever found by uploading the same bytes."
    return text
