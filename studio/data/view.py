"""What the Data tab shows, computed from a check report (tables, histogram, row preview).

Kept out of studio/ui so the page stays wiring only and these views are testable without a browser.
"""

from __future__ import annotations

import pandas as pd

from studio.data.checks import CODES, ERROR, Report
from studio.data.mapping import FORMAT_DESCRIPTIONS
from studio.data.template import split_reasoning

SUMMARY_COLUMNS = ["code", "severity", "rows", "why it matters"]
# What to do comes right after the code: on a phone's width the columns after it are the ones that wrap most.
PROBLEM_COLUMNS = ["row", "code", "what to do", "excerpt", "severity"]
# Shares of the table's width (the Dataframe sizes % columns from its own width): every column on screen from a
# phone's 390 px to a desktop's, the long texts wrapping inside theirs.
SUMMARY_WIDTHS = ["29%", "19%", "12%", "40%"]
PROBLEM_WIDTHS = ["11%", "20%", "35%", "17%", "17%"]
HISTOGRAM_COLUMNS = ["tokens", "rows", "fits"]
HISTOGRAM_BINS = 15  # at most 16 bins: their labels, upright, stay apart down to a phone's width
WITHIN, OVER = "within max_length", "over max_length"
HISTOGRAM_COLORS = {WITHIN: "#6366f1", OVER: "#f97316"}
ALL_CODES = "all codes"


def overview_markdown(report: Report) -> str:
    data = report.to_json()
    dataset = report.dataset
    errors = data["rows"] - data["valid_rows"]
    lines = [
        f"**Format:** `{dataset.format}`" + (
            f" — {FORMAT_DESCRIPTIONS[dataset.format]}" if dataset.format in FORMAT_DESCRIPTIONS else
            " — no known format fits; set the field mapping below"),
        f"**Rows:** {data['rows']:,} · **valid:** {data['valid_rows']:,} · **with errors:** {errors:,} · "
        f"**warnings:** {sum(1 for issue in report.issues if issue.severity != ERROR):,}",
    ]
    if dataset.not_read:
        lines.append(f"⚠️ **Not all of the file was read:** {_escape(dataset.not_read)}")
    if dataset.mapping:
        lines.append(f"**Mapping:** {mapping_markdown(dataset.mapping)}")
    if dataset.alternatives:
        lines.append(f"**Runner-up:** {mapping_markdown(dataset.alternatives[0])} — press *Use the runner-up "
                     "mapping* to check with it instead.")
    lengths = data["lengths"]
    if lengths and lengths.get("count"):
        lines.append(
            f"**Tokens** (as training will feed them): p50 {lengths['p50']:,} · p90 {lengths['p90']:,} · "
            f"p99 {lengths['p99']:,} · max {lengths['max']:,} · over max_length {lengths['max_length']:,}: "
            f"{lengths['over_max_length']:,}"
            + (f" ({lengths['cut_before_answer']:,} cut before the answer: the default fixes drop them)"
               if lengths.get("cut_before_answer") else ""))
    if lengths and lengths.get("tokenizer"):
        lines.append(f"**Measured with:** {_escape(lengths['tokenizer'])} — "
                     + ("exact counts" if lengths.get("exact") else "an estimate: another vocabulary measured")
                     + (" · the token ids are kept: training this file with this tokenizer does not tokenize it "
                        "again" if report.prepared else ""))
    if not report.issues:
        lines.append("✅ No problems found: this set is ready to train on.")
    elif errors:
        lines.append("Rows with errors are left out of training. Apply the fixes below, or fix the file.")
    return "\n\n".join(lines)


MAPPING_PARTS = (("prompt", "prompt"), ("reasoning", "reasoning"), ("answer", "answer"), ("system", "system"),
                 ("turns", "turns"), ("input", "extra input"))


def mapping_markdown(mapping) -> str:
    """`layout` — which field holds each part — and the evidence it was chosen on."""
    data = mapping.to_json()
    parts = " · ".join(f"{label} `{data[key]}`" for key, label in MAPPING_PARTS if data.get(key))
    text = f"`{data['layout']}`" + (f" — {parts}" if parts else "")
    evidence = data.get("evidence") or {}
    if evidence.get("rows"):
        text += (f" ({evidence.get('mapped', 0):,} of {evidence['rows']:,} sampled rows map, "
                 f"{evidence.get('with_reasoning', 0):,} with reasoning)")
    return text


def summary_frame(report: Report) -> pd.DataFrame:
    counts = report.summary
    rows = [[code, CODES[code].severity, count, CODES[code].why] for code, count in counts.items()]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _excerpt(report: Report, row: int, width: int = 80) -> str:
    record = report.dataset.record(row)
    if record.problem or not record.messages:
        return ""
    text = " ⏎ ".join(f"{role}: {content}" for role, content in record.messages)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def problem_frame(report: Report, code: str | None = None, limit: int = 2000) -> pd.DataFrame:
    """One line per issue (filtered to a code), capped so a huge file keeps the page responsive."""
    issues = [issue for issue in report.issues if not code or code == ALL_CODES or issue.code == code]
    rows = [[issue.row, issue.code, issue.message, _excerpt(report, issue.row), issue.severity]
            for issue in issues[:limit]]
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def bin_width(span: float, bins: int = HISTOGRAM_BINS) -> int:
    """The smallest round width (1, 2 or 5 times a power of ten) that covers `span` tokens in `bins` bins."""
    target = max(1.0, span / bins)
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= target:
                return step * scale
        scale *= 10


def histogram_frame(report: Report) -> tuple[pd.DataFrame, int]:
    """The measured lengths in bins of a round width from the shortest row to the longest (a 192-token set is
    not one thin bar at the left of a 4,096-token axis), and the bin width. Each bin's rows are split into those
    within max_length and those over it, so the bin that holds max_length shows where it falls."""
    import numpy as np

    values = report.lengths.lengths.array() if report.lengths else np.zeros(0, np.int64)
    if not len(values):  # no lengths measured, or no row without errors to measure
        return pd.DataFrame({"tokens": pd.Series(dtype=int), "rows": pd.Series(dtype=int),
                             "fits": pd.Series(dtype=str)}), 1
    low, high = int(values.min()), int(values.max())
    width = bin_width(high - low + 1)
    start = low // width * width
    bins = (values - start) // width
    over = values > report.lengths.max_length
    columns: dict[str, list] = {"tokens": [], "rows": [], "fits": []}
    for fits, chosen in ((WITHIN, ~over), (OVER, over)):
        counts = np.bincount(bins[chosen])
        for index in np.flatnonzero(counts):
            columns["tokens"].append(start + int(index) * width)
            columns["rows"].append(int(counts[index]))
            columns["fits"].append(fits)
    return pd.DataFrame(columns), width


def histogram_label(report: Report) -> str:
    """The histogram's title: where max_length is, and how many rows it cuts."""
    if not report.lengths:
        return "Token lengths (training text)"
    limit = report.lengths.max_length
    values = report.lengths.lengths.array()
    if not len(values):
        return f"Token lengths (training text) — max_length {limit:,}: no row without errors to measure"
    over = int((values > limit).sum())
    if not over:
        return f"Token lengths (training text) — max_length {limit:,}: every row fits"
    return (f"Token lengths (training text) — max_length {limit:,}: {over:,} row{'s' if over != 1 else ''} over it "
            "(orange)")


def row_preview_markdown(report: Report, row: int) -> str:
    """Prompt, reasoning and answer of one row apart, with its issues."""
    try:
        record = report.dataset.record(int(row))
    except (KeyError, ValueError, TypeError):
        numbers = report.dataset.records
        return (f"No {report.dataset.row_label()} {row} in this file "
                f"(rows run from {numbers[0].number} to {numbers[-1].number}).")
    label = f"{report.dataset.row_label().capitalize()} {record.number}"
    issues = report.issues_by_row().get(record.number, [])
    parts = [f"### {label}"]
    parts += [f"- **{issue.code}** ({issue.severity}): {_escape(issue.message)}" for issue in issues] or ["- no issues"]
    if record.problem:
        return "\n".join(parts)
    for role, content in record.messages[:-1]:
        parts.append(f"**{role}:**\n\n{_quote(content)}")
    role, content = record.messages[-1]
    if role == "assistant":
        split = split_reasoning(content)
        tokens = report.lengths.reasoning_tokens.get(record.number) if report.lengths else None
        count = f" ({tokens:,} tokens)" if tokens is not None else ""
        parts.append(f"**reasoning{count}:**\n\n{_quote(split.reasoning) or '_(none)_'}")
        parts.append(f"**answer:**\n\n{_quote(split.answer) or '_(none)_'}")
    else:
        parts.append(f"**{role}:**\n\n{_quote(content)}")
    return "\n\n".join(parts)


def _escape(text: str) -> str:
    """Show text as text: tags like <think> must not vanish as HTML in Markdown."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _quote(text: str, limit: int = 4000) -> str:
    text = text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more characters)"
    return "\n".join("> " + _escape(line) for line in text.strip().splitlines()) if text.strip() else ""


def code_choices(report: Report | None) -> list[str]:
    return [ALL_CODES] + (list(report.summary) if report else [])
