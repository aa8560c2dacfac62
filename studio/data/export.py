"""Writing a checked dataset back out as JSON Lines, normalized for training.

Every row is written in one shape whatever its source layout: an optional system turn, the user turns, and
assistant turns whose last reply is `<think>\\n…\\n</think>\\n\\nanswer`. The source row's other fields (ids,
sources, gold answers) are kept beside the turns, so nothing the user brought is lost.
"""

from __future__ import annotations

from pathlib import Path

from studio.data.readers import dumps_jsonl
from studio.data.records import Dataset, Record
from studio.data.template import join_reasoning, split_reasoning

EXPORT_STYLES = ("messages", "conversation")
DEFAULT_EXPORT_STYLE = "messages"


def normalized_turns(record: Record) -> list[dict]:
    """The record's turns as dicts; the last assistant reply in R1's `<think>` form when it has reasoning."""
    turns = [{"role": role, "content": content} for role, content in record.messages]
    if turns and turns[-1]["role"] == "assistant":
        split = split_reasoning(turns[-1]["content"])
        if split.closed:
            turns[-1]["content"] = join_reasoning(split.reasoning, split.answer)
    return turns


def export_row(record: Record, style: str) -> dict:
    row = {style: normalized_turns(record)}
    for name, value in (record.extra or {}).items():
        # A source field with the layout's own name (e.g. a non-R1 `messages` beside the R1 trace) is kept
        # under another name rather than overwritten.
        key = name
        while key in row:
            key = f"source_{key}"
        row[key] = value
    return row


def export_jsonl(dataset: Dataset, path: str | Path | None = None,
                 style: str = DEFAULT_EXPORT_STYLE) -> tuple[bytes, int]:
    """The dataset as JSON Lines in the OpenAI `messages` or the seed `conversation` layout.

    Returns (bytes, rows left out): rows that could not be read have no messages to write. Callers drop rows
    with errors first (apply_fixes with `drop_errors`).
    """
    if style not in EXPORT_STYLES:
        raise ValueError(f"unknown export layout {style!r}; choose {' or '.join(EXPORT_STYLES)}")
    rows = [export_row(record, style) for record in dataset.records if not record.problem]
    data = dumps_jsonl(rows)
    if path is not None:
        Path(path).write_bytes(data)
    return data, len(dataset.records) - len(rows)
