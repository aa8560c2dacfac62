"""What the Data tab shows, computed from a check report (tables, histogram, row preview).

Kept out of studio/ui so the page stays wiring only and these views are testable without a browser.
"""

from __future__ import annotations

import pandas as pd

from studio.data.checks import CODES, ERROR, Report
from studio.data.mapping import FORMAT_DESCRIPTIONS
from studio.data.template import split_reasoning

SUMMARY_COLUMNS = ["code", "severity", "rows", "why it matters"]
PROBLEM_COLUMNS = ["row", "code", "severity", "excerpt", "what to do"]
HISTOGRAM_COLUMNS = ["tokens", "rows", "fits"]
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
            f"{lengths['over_max_length']:,}")
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
    rows = [[issue.row, issue.code, issue.severity, _excerpt(report, issue.row), issue.message]
            for issue in issues[:limit]]
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def histogram_frame(report: Report) -> pd.DataFrame:
    summary = report.lengths.summary() if report.lengths else {}
    if "histogram" not in summary:  # no lengths measured, or no row without errors to measure
        return pd.DataFrame({"tokens": pd.Series(dtype=str), "rows": pd.Series(dtype=int),
                             "fits": pd.Series(dtype=str)})
    histogram = summary["histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    limit = report.lengths.max_length
    labels = [f"{edges[i]:,}–{edges[i + 1]:,}" for i in range(len(counts))]
    fits = ["within max_length" if edges[i + 1] <= limit else "over max_length" for i in range(len(counts))]
    return pd.DataFrame({"tokens": labels, "rows": counts, "fits": fits})


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
