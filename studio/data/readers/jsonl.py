"""JSON Lines: read in blocks, each line parsed alone (a blank line is skipped).

Part of studio.data.readers (see its docstring for the limits every reader keeps)."""

from __future__ import annotations

import os
from itertools import repeat
from pathlib import Path

import orjson

from studio.data import readers
from studio.data.readers import _BOM, _Budget, _parse_error, _size, _too_large

# The limits and _BLOCK are read through the package (`readers.NAME`) when used, not imported by name: one
# setattr on studio.data.readers (as the tests do) then reaches every reader.


def _blocks(handle):
    """(offset, lines, long, chars) over a binary file: `lines`, whole lines (without their b"\\n") starting at
    byte `offset`, holding at most `chars` characters (their bytes less 5 a \\uXXXX escape); or, for a line over
    MAX_ROW_BYTES, lines None and long = (its length in bytes, its count of '"'), never held in memory."""
    offset, pending, skipped, quotes = 0, b"", -1, 0
    while True:
        chunk = handle.read(readers._BLOCK)
        if not chunk:
            break
        if skipped >= 0:  # inside a line too long to keep: find its end
            at = chunk.find(b"\n")
            if at < 0:
                skipped += len(chunk)
                quotes += chunk.count(b'"')
                continue
            skipped += at
            quotes += chunk.count(b'"', 0, at)
            yield offset, None, (skipped, quotes), 0
            offset += skipped + 1
            skipped = -1
            chunk = chunk[at + 1:]
        data = pending + chunk if pending else chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        if lines:
            consumed = len(data) - len(pending)
            yield offset, lines, None, consumed - len(lines) - 5 * data.count(b"\\u", 0, consumed)
            offset += consumed
        if len(pending) > readers.MAX_ROW_BYTES:
            skipped, quotes, pending = len(pending), pending.count(b'"'), b""
    if skipped >= 0:
        yield offset, None, (skipped, quotes), 0
    elif pending:
        yield offset, [pending], None, len(pending) - 5 * pending.count(b"\\u")


def _estimate(lines: list[bytes]) -> int:
    """The characters some JSON lines hold at most: their bytes, less 5 for each \\uXXXX escape."""
    return sum(map(len, lines)) - 5 * sum(line.count(b"\\u") for line in lines if b"\\u" in line)


def _read_jsonl(path: Path):
    budget = _Budget("line")
    rows = budget.rows
    append, loads = rows.append, orjson.loads
    number = 0
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for offset, lines, long, block_chars in _blocks(handle):
            budget.flush(offset / size if size else None)  # the lines before this block are whole
            if offset == 0 and lines and lines[0].startswith(_BOM):
                lines[0] = lines[0][3:]
            if lines is None:
                if not budget.room(1, 0):
                    budget.stop(number + 1, f"from byte {offset:,} of {size:,}")
                    break
                number += 1
                append(_too_large(number, "line", f"{long[0]:,} bytes"))
                continue
            count = len(lines)
            # Fast path: every line short and parsing (a blank line fails too and takes the careful path).
            if max(map(len, lines), default=0) <= readers.MAX_ROW_CHARS:
                chars = block_chars
                if budget.room(count, chars):
                    try:
                        parsed = list(map(loads, lines))
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        rows.extend(zip(range(number + 1, number + count + 1), parsed, repeat(None)))
                        number += count
                        budget.chars += chars
                        continue
            at = offset
            for line in lines:
                number += 1
                start, at = at, at + len(line) + 1
                if not line or line.isspace():
                    continue
                chars = _estimate([line]) if len(line) <= readers.MAX_ROW_CHARS else 0
                if not budget.room(1, chars):
                    budget.stop(number, f"from byte {start:,} of {size:,}")
                    return "jsonl", rows
                try:
                    row = loads(line)
                except orjson.JSONDecodeError as error:
                    append(_parse_error(number, "line", error))
                    continue
                if len(line) > readers.MAX_ROW_CHARS:  # bytes bound the characters from above; count them
                    chars = _size(row)
                    if chars > readers.MAX_ROW_CHARS:
                        append(_too_large(number, "line", f"{chars:,} characters"))
                        continue
                    if not budget.room(1, chars):
                        budget.stop(number, f"from byte {start:,} of {size:,}")
                        return "jsonl", rows
                append((number, row, None))
                budget.chars += chars
            if rows.not_read:
                break
    return "jsonl", rows
