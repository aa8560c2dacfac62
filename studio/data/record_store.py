"""The rows of a loaded dataset, kept on disk once they pass a megabyte: a check holds counts, not text.

A million short rows held as Python records cost about 570 bytes each; a real R1 set of long rows costs its
whole text again. `RecordStore` is a sequence of `Record`s that keeps the most recent ones in memory and writes
the rest, a chunk at a time, to an anonymous temporary file (gone when the store is, or when the process ends,
however it ends). Reading a row back decodes its chunk; iterating decodes one chunk at a time.

Written by hand rather than as an Arrow table: a record is nested (turns of role and text, a problem, the source
row's other fields of any type) and is always read whole, so a chunk is one `marshal` blob of plain tuples —
several times faster both ways than Arrow's conversion of nested columns to Python, which a check pays on every
row. A chunk holding a value `marshal` cannot write (a date from Parquet, say) is pickled instead.
"""

from __future__ import annotations

import bisect
import marshal
import os
import pickle
import tempfile
from array import array
from collections.abc import Sequence
from operator import itemgetter

from studio import config as studio_config
from studio.data.readers import DatasetUnreadable

CHUNK_CHARS = 1 << 20  # characters of text gathered before they are written as one chunk
CHUNK_ROWS = 4096  # ... or this many rows
_MARSHAL, _PICKLE = b"M", b"P"
_first = itemgetter(0)


def spool_folder() -> str:
    """Where stores write: the studio's cache (its disk is sized for datasets), else the system's temp folder."""
    folder = studio_config.STUDIO_HOME / "cache" / "rows"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)
    except OSError:
        return tempfile.gettempdir()


class RecordStore(Sequence):
    """Records in the order added; `store[i]`, `len`, iteration, and `index_of(number)` (numbers ascend)."""

    def __init__(self, chunk_chars: int = CHUNK_CHARS, chunk_rows: int = CHUNK_ROWS):
        self.chunk_chars, self.chunk_rows = chunk_chars, chunk_rows
        self._numbers = array("q")  # every record's number, in order
        self._chunk_offsets = array("q", [0])  # byte offsets of the chunks in the file, and its end
        self._chunk_starts = array("q", [0])  # the index of each chunk's first record, and the count written
        self._pending: list[tuple] = []  # records not written yet, as tuples
        self._pending_chars = 0
        self._file = None
        self._recent: tuple[int, list] | None = None  # the chunk decoded last (previews read neighbours)

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, record) -> None:
        """Add one record (kept in memory until a chunk's worth has come)."""
        self._pending.append((record.number, record.messages, record.problem, record.extra))
        self._numbers.append(record.number)
        self._pending_chars += sum(len(content) for _, content in record.messages) + 64
        if self._pending_chars >= self.chunk_chars or len(self._pending) >= self.chunk_rows:
            self._write_pending()

    def extend(self, records) -> None:
        """Add a block of records and write it at once (a reader's block is already bounded in size: this
        spares the per-row size count, on a path that runs for every row of every check)."""
        rows = [(record.number, record.messages, record.problem, record.extra) for record in records]
        if not rows:
            return
        self._numbers.extend(map(_first, rows))
        self._pending.extend(rows)
        self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        try:
            blob = _MARSHAL + marshal.dumps(self._pending)
        except ValueError:  # a value marshal does not know (a datetime, a str subclass): pickle knows them all
            blob = _PICKLE + pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=spool_folder(), prefix="rows-", buffering=0)
            view, written = memoryview(blob), 0
            while written < len(blob):
                written += self._file.write(view[written:])
        except OSError as error:
            raise DatasetUnreadable(
                f"no room to keep the rows read on disk ({error}): a large dataset is checked through a working "
                f"copy under {spool_folder()}; free some disk space there (or point STUDIO_HOME at a larger "
                "disk) and check again") from None
        self._chunk_offsets.append(self._chunk_offsets[-1] + len(blob))
        self._chunk_starts.append(self._chunk_starts[-1] + len(self._pending))
        self._pending, self._pending_chars = [], 0

    # -- reading ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._numbers)

    def _chunk(self, chunk: int) -> list:
        recent = self._recent
        if recent is not None and recent[0] == chunk:
            return recent[1]
        start, end = self._chunk_offsets[chunk], self._chunk_offsets[chunk + 1]
        blob = os.pread(self._file.fileno(), end - start, start)
        rows = marshal.loads(memoryview(blob)[1:]) if blob[:1] == _MARSHAL else pickle.loads(memoryview(blob)[1:])
        self._recent = (chunk, rows)
        return rows

    def _row(self, index: int) -> tuple:
        written = self._chunk_starts[-1]
        if index >= written:
            return self._pending[index - written]
        chunk = bisect.bisect_right(self._chunk_starts, index) - 1
        return self._chunk(chunk)[index - self._chunk_starts[chunk]]

    def __getitem__(self, index):
        from studio.data.records import Record

        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("record index out of range")
        return Record(*self._row(index))

    def __iter__(self):
        from studio.data.records import Record

        for chunk in range(len(self._chunk_starts) - 1):
            for row in self._chunk(chunk):
                yield Record(*row)
        for row in list(self._pending):
            yield Record(*row)

    def index_of(self, number: int) -> int:
        """The index of the record with this number (KeyError when there is none)."""
        index = bisect.bisect_left(self._numbers, number)
        if index == len(self._numbers) or self._numbers[index] != number:
            raise KeyError(number)
        return index

    @property
    def on_disk(self) -> int:
        """Bytes written to the working file."""
        return self._chunk_offsets[-1]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable, like a list

    def __repr__(self) -> str:
        return f"RecordStore({len(self):,} records, {self.on_disk:,} bytes on disk)"
