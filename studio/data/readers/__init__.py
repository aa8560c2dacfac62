"""Reading raw rows: files (JSONL, JSON, CSV, Parquet) and Hub ids.

`read_raw_rows` gives every row as (number, row, problem): the number in the source (the 1-based line for
JSONL, the 1-based record otherwise), the parsed row or None, and its problem or None. Given a `sink`, it hands
the rows over a block at a time instead (`sink(rows, label, done)`) and keeps none: what a check of a million
rows holds is one block, not the file. A row that cannot be read
keeps its number so the checks report it and the other rows still load; a source that cannot be read at all
raises `DatasetUnreadable`. A problem is a message; a `RowTooLarge` message has the code `row_too_large`, any
other is a `parse_error`.

Nothing a file holds can make reading it cost much more than the rows it keeps (limits in studio.config):

- A row over MAX_ROW_CHARS characters is `row_too_large`, known from its size before it is parsed: a JSONL line's
  or JSON array element's bytes (one over MAX_ROW_BYTES is never even held in memory), a CSV record's bytes, a
  Parquet row's string lengths as Arrow has them. It is never built into Python objects, so never tokenized.
  A row's size is the characters of its strings (field names included) plus one for every other value.
- A source is read up to MAX_DATASET_CHARS characters and MAX_DATASET_ROWS rows; past that it is not read. The
  rows read so far are kept, the last row is a `row_too_large` that says where reading stopped and why, and the
  list's `not_read` holds the same message (None when everything was read).

One module per source, each with its own reading strategy: `jsonl` (JSON Lines), `json_list` (a JSON list, or an
object holding one), `csv_file` (CSV), `parquet` (Parquet; also the Arrow tables of Hub datasets) and `hub`
(Hub ids). This package holds what they share (the row problems, RawRows, the dataset budget, sizes, errors)
and `read_raw_rows`, which picks one by the file's suffix.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from pathlib import Path

import orjson  # several times faster than json.loads; the checks must keep up with a bare parse

from studio.config import MAX_DATASET_CHARS, MAX_DATASET_ROWS, MAX_ROW_BYTES, MAX_ROW_CHARS  # noqa: F401

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 22  # bytes read at a time from JSONL and skipped lines
_SHARE_CHARS = 16 << 20  # a dictionary column is kept as one shared Python object per entry if that saves this
# The format modules read the limits above, _BLOCK and _SHARE_CHARS as `readers.NAME` when they use them, so
# that one setattr on this package (as the tests do) reaches every reader.


class DatasetUnreadable(Exception):
    """The file or Hub dataset cannot be read at all (as opposed to some bad rows)."""


class RowTooLarge(str):
    """A row's problem: over a size limit, so it was not read (a plain message is a parse error)."""

    code = "row_too_large"


class RawRows(list):
    """[(number, row or None, problem or None)]; `not_read` says what was left unread past the dataset limits."""

    not_read: str | None = None


# Where the readers' _Budget hands its rows in this context (read_raw_rows' `sink`); None: they are kept.
_SINK: contextvars.ContextVar = contextvars.ContextVar("studio_raw_rows_sink", default=None)


class _SinkFailed(Exception):
    """What the sink raised, carried out of the reader so it is not taken for a reading error."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def read_raw_rows(source: str, sink=None) -> tuple[str, RawRows]:
    """(kind, [(number, row or None, problem or None)]) for a file path or Hub id.

    With `sink`, each block of rows is handed to `sink(rows, label, done)` as it is read (`label`: "line" or
    "record", `done`: the fraction of the source read, or None) and the list returned is empty: only its
    `not_read` says something. What the sink raises is raised as it is."""
    token = _SINK.set(sink)
    try:
        kind, rows = _read_raw_rows(source)
    except _SinkFailed as failed:
        raise failed.error from None
    finally:
        _SINK.reset(token)
    return kind, rows


def _read_raw_rows(source: str) -> tuple[str, RawRows]:
    path = Path(source).expanduser()
    if path.is_dir():
        raise DatasetUnreadable(f"{source} is a folder: pass a .jsonl, .json, .csv or .parquet file.")
    if path.exists():
        suffix = path.suffix.lower()
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        if suffix not in readers:
            raise DatasetUnreadable(
                f"{path.name}: unsupported file type {suffix or '(none)'}; use one of "
                + ", ".join(FILE_SUFFIXES) + "."
            )
        try:
            kind, rows = readers[suffix](path)
        except (DatasetUnreadable, _SinkFailed):
            raise
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetUnreadable(f"{path}: cannot read the file ({error}).") from None
        _flush_rest(rows, "line" if kind == "jsonl" else "record")
        return kind, rows
    if looks_like_hub_id(source):
        rows = _read_hub(source)
        _flush_rest(rows, "record")
        return "hub", rows
    raise DatasetUnreadable(
        f"{source}: no such file, and not a Hub dataset id (owner/name). Check the path."
    )


# A Hub id: owner/name, or owner/name:split (read by hub.py).
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.endswith(FILE_SUFFIXES)


# --------------------------------------------------------------------------------------------------
# Limits


# Limits other than the checks' own for what reads in this context: training reads further than a check
# (studio.data.prepared: it holds the rows only until they are tokenized), and names its own variables.
_LIMITS: contextvars.ContextVar = contextvars.ContextVar("studio_reading_limits", default=None)


@contextlib.contextmanager
def reading_limits(rows: int, chars: int, variables: tuple[str, str]):
    """Read at most `rows` rows and `chars` characters in this context; `variables` name the two settings."""
    token = _LIMITS.set((rows, chars, variables))
    try:
        yield
    finally:
        _LIMITS.reset(token)


def _flush_rest(rows: RawRows, label: str) -> None:
    """Hand the rows a reader kept past its last flush (all of them, for one that never flushes) to the sink."""
    sink = _SINK.get()
    if sink is not None and rows:
        try:
            sink(list(rows), label, 1.0)
        except Exception as error:
            raise _SinkFailed(error) from error
        rows.clear()


class _Budget:
    """The dataset limits, counted while rows are read into `rows`; `flush` hands them to the sink."""

    def __init__(self, label: str):
        self.label = label
        self.rows = RawRows()
        self.handed = 0  # rows already given to the sink (and gone from `rows`)
        self.chars = 0
        self.sink = _SINK.get()
        self.max_rows, self.max_chars, self.variables = _LIMITS.get() or (
            MAX_DATASET_ROWS, MAX_DATASET_CHARS, ("STUDIO_MAX_DATASET_ROWS", "STUDIO_MAX_DATASET_CHARS"))

    @property
    def count(self) -> int:
        """Rows read so far."""
        return self.handed + len(self.rows)

    def room(self, count: int, chars: int) -> bool:
        return self.count + count <= self.max_rows and self.chars + chars <= self.max_chars

    def flush(self, done: float | None = None) -> None:
        """Give the rows read so far to the sink, if there is one (the readers call this between blocks, only
        where no later part of the file can change what the rows read so far are)."""
        if self.sink is None or not self.rows:
            return
        rows = list(self.rows)
        self.rows.clear()  # in place: the readers hold `rows` and its methods
        self.handed += len(rows)
        try:
            self.sink(rows, self.label, done)
        except Exception as error:
            raise _SinkFailed(error) from error

    def stop(self, number: int, rest: str) -> None:
        """Reading stops before row `number`: the last row says so, and so does `rows.not_read`."""
        if self.count >= self.max_rows:
            why = f"the studio reads at most {self.max_rows:,} rows of one dataset ({self.variables[0]})"
        else:
            why = (f"the {self.count:,} rows before it already hold {self.chars:,} characters and the studio "
                   f"reads at most {self.max_chars:,} characters of one dataset ({self.variables[1]})")
        message = (f"{self.label} {number} and everything after it ({rest}) were not read: {why}. Those rows are "
                   "left out of the checks and of training; split the file into parts under the limit and check "
                   f"each part, or raise {self.variables[1] if 'characters' in why else self.variables[0]}")
        self.rows.not_read = message
        self.rows.append((number, None, RowTooLarge(message)))


def _too_large(number: int, label: str, size: str) -> tuple[int, None, RowTooLarge]:
    return number, None, RowTooLarge(
        f"{label} {number} is too large to read: {size}, over the limit of {MAX_ROW_CHARS:,} characters for one "
        "row (some 125k tokens or more: past the models' whole context), so it was neither parsed nor tokenized; "
        "split it into shorter rows or delete it")


def _size(value) -> int:
    """A parsed row's size: the characters of its strings (keys included) plus one for every other value."""
    total, stack = 0, [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            total += len(item)
        elif kind is dict:
            total += 1
            for key, child in item.items():
                total += len(key) if type(key) is str else 1
                push(child)
        elif kind is list or kind is tuple:
            total += 1
            stack.extend(item)
        else:
            total += 1
    return total


def _parse_error(number: int, label: str, error: Exception) -> tuple[int, None, str]:
    return number, None, (f"{label} {number} is not valid JSON ({error.msg} at column {error.colno}); "
                          "fix or delete it")


# The inverse of _read_jsonl (jsonl.py): rows as JSON Lines (the exports write these).
def dumps_jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


# The format readers, imported last: each imports the shared pieces above from this package, so they must be
# defined first (a lazy import inside read_raw_rows would work too, but then `_probe_hub` and the other
# readers would not be attributes of the package until the first read).
from studio.data.readers.csv_file import _read_csv  # noqa: E402
from studio.data.readers.hub import _probe_hub, _read_hub  # noqa: E402, F401 (_probe_hub: stand-ins go here)
from studio.data.readers.json_list import _read_json  # noqa: E402
from studio.data.readers.jsonl import _read_jsonl  # noqa: E402
from studio.data.readers.parquet import _read_parquet  # noqa: E402

__all__ = ["DatasetUnreadable", "FILE_SUFFIXES", "RawRows", "RowTooLarge", "dumps_jsonl", "looks_like_hub_id",
           "read_raw_rows"]
