"""CSV: records found in the bytes (a newline outside quotes ends one), each decoded and parsed alone when
needed.

CSV is read in blocks. A CSV record with a byte that is not UTF-8 is a parse error naming the record and the
byte's offset; the other records load.

Part of studio.data.readers (see its docstring for the limits every reader keeps)."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import orjson

from studio.data import readers
from studio.data.readers import _BOM, DatasetUnreadable, _Budget, _too_large

# The limits and _BLOCK are read through the package (`readers.NAME`) when used, not imported by name: one
# setattr on studio.data.readers (as the tests do) then reaches every reader.

_CSV_RECORD = re.compile(rb'(?:[^"\n]++|"[^"]*+")*+\n')


def _csv_pieces(handle):
    """(offset, piece, longest) over a CSV file: `piece`, bytes holding whole records, its longest record
    `longest` bytes; or, for a record over MAX_ROW_BYTES, piece None and longest its length (never held)."""
    offset, pending = 0, b""
    match = _CSV_RECORD.match
    while True:
        size = readers.MAX_ROW_CHARS // 2
        chunk = handle.read(size)
        data = pending + chunk if pending else chunk
        if not chunk:
            if data:  # the last record: no final newline, or quotes that never close
                yield offset, data, len(data)
            return
        # The last record boundary: a newline with an even number of quotes before it; at the end of the file,
        # the end (so that a file with quotes the csv module reads as literal text is cut nowhere else).
        final = len(chunk) < size and len(data) <= readers.MAX_ROW_BYTES
        position = len(data) if final else data.rfind(b"\n") + 1
        if position and not final:
            odd = data.count(b'"', 0, position) & 1
            while odd and position:
                previous = data.rfind(b"\n", 0, position - 1) + 1
                odd ^= data.count(b'"', previous, position) & 1
                position = previous
        if position <= readers.MAX_ROW_CHARS:
            longest = position  # every record in it is at most that long
        else:  # a long record in it: measure them
            at = longest = 0
            while (found := match(data, at, position)) is not None and found.end() > at:
                longest, at = max(longest, found.end() - at), found.end()
            longest = max(longest, position - at)
        if position:
            yield offset, data[:position], longest
            offset += position
            pending = data[position:]
        else:
            pending = data
        if len(pending) > readers.MAX_ROW_BYTES:  # a record too long to keep: find its end, counting quotes
            odd, length, pending = pending.count(b'"') & 1, len(pending), b""
            while True:
                chunk = handle.read(readers._BLOCK)
                if not chunk:
                    yield offset, None, length
                    return
                at, end = 0, -1
                while (newline := chunk.find(b"\n", at)) >= 0:
                    odd ^= chunk.count(b'"', at, newline) & 1
                    at = newline + 1
                    if not odd:
                        end = newline
                        break
                if end < 0:
                    odd ^= chunk.count(b'"', at) & 1
                    length += len(chunk)
                    continue
                yield offset, None, length + end
                offset += length + end + 1
                pending = chunk[end + 1:]
                break


def _read_csv(path: Path):
    csv.field_size_limit(1 << 30)  # reasoning columns easily exceed the 128 KB default
    budget = _Budget("record")
    rows = budget.rows
    header = None
    number = 0

    def add(values: list[str]) -> None:
        nonlocal header, number
        if header is None:
            header = values
            if not header:
                raise DatasetUnreadable(f"{path.name} is empty: a CSV needs a header row naming the fields.")
            return
        number += 1
        if not values:
            return
        if len(values) != len(header):
            rows.append((number, None,
                         f"record {number} has {len(values)} fields but the header has {len(header)}; "
                         "check quoting of commas and newlines"))
            return
        rows.append((number, {key: _maybe_json(value) for key, value in zip(header, values)}, None))

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for offset, piece, longest in _csv_pieces(handle):
            budget.flush(offset / size if size else None)  # the records before this piece are whole
            if offset == 0 and piece and piece.startswith(_BOM):
                piece, offset = piece[3:], 3
            if piece is None:
                if header is None:
                    raise DatasetUnreadable(f"{path.name}: its header row is {longest:,} bytes long; a CSV needs a "
                                            "header row naming the fields.")
                if not budget.room(1, 0):
                    budget.stop(number + 1, f"from byte {offset:,} of {size:,}")
                    break
                number += 1
                rows.append(_too_large(number, "record", f"{longest:,} bytes"))
                continue
            if longest <= readers.MAX_ROW_CHARS and budget.room(piece.count(b"\n"), len(piece)):
                try:  # fast path: the whole piece at once
                    parsed = list(csv.reader(io.StringIO(piece.decode("utf-8"), newline="")))
                except (UnicodeDecodeError, csv.Error):
                    pass
                else:
                    if header is None and parsed:
                        add(parsed.pop(0))
                    width, append = len(header), rows.append
                    for values in parsed:
                        number += 1
                        if len(values) == width:
                            append((number, {key: value if value[:1] != "[" and not value[:1].isspace()
                                             else _maybe_json(value) for key, value in zip(header, values)}, None))
                        elif values:
                            number -= 1
                            add(values)
                    budget.chars += len(piece)
                    continue
            # Careful path: record by record.
            position = 0
            while position < len(piece):
                found = _CSV_RECORD.match(piece, position)
                end = found.end() if found else len(piece)
                record, start, position = piece[position:end], offset + position, end
                if header is not None and len(record) > readers.MAX_ROW_BYTES:
                    number += 1
                    rows.append(_too_large(number, "record", f"{len(record):,} bytes"))
                    continue
                try:
                    text = record.decode("utf-8")
                except UnicodeDecodeError as error:
                    at = start + error.start
                    if header is None:
                        raise DatasetUnreadable(
                            f"{path.name}: the header row is not UTF-8 (byte 0x{record[error.start]:02x} at byte "
                            f"offset {at:,}); save the file as UTF-8.") from None
                    number += 1
                    rows.append((number, None,
                                 f"record {number} is not UTF-8: byte 0x{record[error.start]:02x} at byte offset "
                                 f"{at:,} of the file cannot be decoded; save the file as UTF-8 or fix that byte "
                                 "(the other records are read)"))
                    continue
                try:
                    records = list(csv.reader(io.StringIO(text, newline="")))
                except csv.Error as error:
                    if header is None:
                        raise DatasetUnreadable(f"{path.name}: the header row cannot be read ({error}).") from None
                    number += 1
                    rows.append((number, None, f"record {number} cannot be read as CSV ({error}); fix or delete it"))
                    continue
                chars = sum(len(value) for values in records for value in values) + len(records)
                if header is not None and chars > readers.MAX_ROW_CHARS:
                    number += 1
                    rows.append(_too_large(number, "record", f"{chars:,} characters"))
                    continue
                if header is not None and not budget.room(len(records), chars):
                    budget.stop(number + 1, f"from byte {start:,} of {size:,}")
                    break
                for values in records:
                    add(values)
                budget.chars += chars
            if rows.not_read:
                break
    if header is None:
        raise DatasetUnreadable(f"{path.name} is empty: a CSV needs a header row naming the fields.")
    return "csv", rows


def _maybe_json(value: str):
    """CSV cells holding a list of turns are JSON text; decode those, keep other text as is."""
    stripped = value.lstrip()
    if stripped.startswith("["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value
