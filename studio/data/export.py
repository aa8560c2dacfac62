"""Writing a checked dataset back out as JSON Lines, normalized for training.

Every row is written in one shape whatever its source layout: an optional system turn, the user turns, and
assistant turns whose last reply is `<think>\\n…\\n</think>\\n\\nanswer`. The source row's other fields (ids,
sources, gold answers) are kept beside the turns, so nothing the user brought is lost.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from studio.data.readers import dumps_jsonl
from studio.data.records import Dataset, Record
from studio.data.template import join_reasoning, split_reasoning

EXPORT_STYLES = ("messages", "conversation")
DEFAULT_EXPORT_STYLE = "messages"


def style_for(layout: str | None) -> str:
    """The export layout that keeps the input's: its own when the export writes it, else the default (turns in
    OpenAI `messages`)."""
    return layout if layout in EXPORT_STYLES else DEFAULT_EXPORT_STYLE


def style_note(layout: str | None) -> str:
    """One line under the export choice: which layout the file is written in, and why."""
    style = style_for(layout)
    if layout == style:
        return f"Kept as your file's layout, `{layout}`; both train the same, pick what your other tools read."
    return (f"Your file's layout, `{layout or 'unknown'}`, is written as `{style}` turns (the export writes "
            f"{' or '.join(EXPORT_STYLES)}); both train the same.")


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


def write_jsonl(dataset: Dataset, out: BinaryIO, style: str = DEFAULT_EXPORT_STYLE) -> tuple[int, int]:
    """Write the dataset to `out` as JSON Lines in the OpenAI `messages` or the seed `conversation` layout, a
    block of rows at a time (a large set is never held whole). Returns (rows written, rows left out): rows that
    could not be read have no messages to write. Callers drop rows with errors first (apply_fixes with
    `drop_errors`)."""
    if style not in EXPORT_STYLES:
        raise ValueError(f"unknown export layout {style!r}; choose {' or '.join(EXPORT_STYLES)}")
    written = left_out = 0
    block: list[dict] = []
    for record in dataset.records:
        if record.problem:
            left_out += 1
            continue
        block.append(export_row(record, style))
        if len(block) == 1024:
            out.write(dumps_jsonl(block))
            written += len(block)
            block = []
    out.write(dumps_jsonl(block))
    return written + len(block), left_out


def export_jsonl(dataset: Dataset, path: str | Path | None = None,
                 style: str = DEFAULT_EXPORT_STYLE) -> tuple[bytes, int]:
    """The dataset as JSON Lines bytes (and written to `path` when given): (bytes, rows left out). For a small
    set; write_jsonl streams a large one to a file."""
    buffer = io.BytesIO()
    _, left_out = write_jsonl(dataset, buffer, style)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data, left_out
