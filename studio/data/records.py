"""Loading a dataset: `load_dataset` reads a file or Hub id into a `Dataset` of `Record`s.

Every row becomes a `Record`: its number in the source (the 1-based line for JSONL, the 1-based record
otherwise) and its chat messages as (role, content) pairs, whose last assistant content carries
`<think>…</think>` then the answer. Rows that cannot be parsed or mapped keep their number and a
`problem` (code, message) so the checks report them and the other rows still load; a row over the size limit
(`row_too_large`) was never parsed. When the source is larger than the studio reads (studio.config's dataset
limits), `Dataset.not_read` says so, and so does the last record's problem.

The steps live below this module: `readers` (raw rows from files and Hub ids), `detect` (the layout, by
evidence), `mapping` (the layouts, normalizing a row, the user's overrides). This module glues them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio.data.detect import (
    SAMPLE_ROWS, _evidence, _profiles, _sample, _score, _turns_layout, _unknown_format_reason, detect_mappings,
)
from studio.data.mapping import (
    FORMATS, TURN_LAYOUTS, FieldMapping, _IncompleteMapping, _norm, _Unmappable, _used_fields, normalize_row,
    parse_mapping_overrides,
)
from studio.data.readers import DatasetUnreadable, read_raw_rows
from studio.data.record_store import RecordStore

MAX_ALTERNATIVES = 8  # the most runner-up mappings a Dataset keeps
# Rows whose fields fit no layout get the full explanation this many times per set of fields, then a short
# message pointing to the first: a million such rows would otherwise hold ~500 MB of repeated text.
FULL_REASONS = 20


@dataclass(slots=True)
class Record:
    number: int  # 1-based line (JSONL) or record (other sources)
    messages: list[tuple[str, str]] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (code, message) when the row could not be read or mapped
    extra: dict | None = None  # the source row's fields the mapping did not read, kept for export


@dataclass
class Dataset:
    source: str
    kind: str  # jsonl | json | csv | parquet | hub
    mapping: FieldMapping | None
    records: "Sequence[Record]"  # a RecordStore when loaded from a source; any sequence when built in code
    alternatives: list[FieldMapping] = field(default_factory=list)  # other mappings that fit, best first
    not_read: str | None = None  # what of the source was left unread past the dataset limits (None: all was read)
    _by_number: dict[int, Record] | None = field(default=None, repr=False, compare=False)

    def record(self, number: int) -> Record:
        """The record with this row number (KeyError when there is none)."""
        if isinstance(self.records, RecordStore):
            return self.records[self.records.index_of(number)]
        if self._by_number is None:
            self._by_number = {record.number: record for record in self.records}
        return self._by_number[number]

    @property
    def format(self) -> str:
        return self.mapping.format if self.mapping else "unknown"

    def row_label(self) -> str:
        return "line" if self.kind == "jsonl" else "record"


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while building many rows.

    Rows hold no reference cycles, but every few thousand new objects the collector rescans all rows
    kept so far; on a million rows that rescanning costs more than parsing them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------------
# Loading


def load_dataset(source: str, mapping: FieldMapping | None = None,
                 overrides: dict[str, str] | None = None, *, on_records=None) -> Dataset:
    """Read a file or Hub id into records; detects the mapping unless one is given, then applies the
    user's overrides (e.g. {"prompt": "question"}, or FieldMapping.to_overrides()) to it. `on_records(records,
    label)` sees every block of records as it is read (the checks run there: the rows are read once)."""
    with paused_gc():
        return _load_dataset(source, mapping, overrides, on_records)


def _choose_mapping(sample: list[dict], mapping: FieldMapping | None,
                    overrides: dict[str, str] | None) -> tuple[FieldMapping | None, list[FieldMapping]]:
    """(the mapping, the alternatives) for the sample, detected or given, with the overrides applied."""
    overrides = {key: value for key, value in (overrides or {}).items()
                 if value is not None and str(value).strip()}
    detected = detect_mappings(sample) if mapping is None else []
    if mapping is None and detected:
        mapping = detected[0]
    if overrides:
        layout = next((str(value).strip() for key, value in overrides.items()
                       if _norm(key) in ("layout", "format")), None)
        base = mapping
        if layout in FORMATS and (base is None or base.format != layout):
            base = _best_for_layout(detected, layout) or base
        try:
            mapping = parse_mapping_overrides(base, overrides)
        except _IncompleteMapping as error:
            fields = ", ".join(sorted(_profiles(sample))) or "none"
            raise ValueError(f"{error}; the rows have fields {fields}") from None
        if layout is None and mapping.turns:
            profile = _profiles(sample).get(mapping.turns)
            if profile and profile.turns:
                mapping = replace(mapping, format=_turns_layout(profile))
    if mapping is not None:
        known = next((other for other in detected if other == mapping), None)
        evidence = known.evidence if known is not None else _evidence(_score(mapping, sample))
        mapping = replace(mapping, evidence=evidence)
    alternatives = [other for other in detected if other != mapping and other.evidence["mapped"]]
    return mapping, alternatives[:MAX_ALTERNATIVES]


def _best_for_layout(detected: list[FieldMapping], layout: str) -> FieldMapping | None:
    """The best detected mapping to read the rows in a forced layout: that layout's, else the same kind's."""
    same = [mapping for mapping in detected if mapping.format == layout]
    if same:
        return same[0]
    turns = layout in TURN_LAYOUTS
    kind = [mapping for mapping in detected if bool(mapping.turns) == turns]
    if layout == "reasoning_field":
        kind = [mapping for mapping in kind if mapping.reasoning]
    elif not turns:
        kind.sort(key=lambda mapping: mapping.reasoning is not None)  # stable: the best without reasoning first
    return replace(kind[0], format=layout) if kind else None


def _load_dataset(source: str, mapping: FieldMapping | None, overrides: dict[str, str] | None,
                  on_records=None) -> Dataset:
    loader = _Loader(mapping, overrides, on_records)
    kind, rest = read_raw_rows(source, sink=loader.take)
    loader.finish()
    if not len(loader.store):
        raise DatasetUnreadable(f"{_source_name(source)} holds no rows: add some (in a .jsonl file, one JSON object "
                                "a line) or choose another file.")
    return Dataset(source, kind, loader.mapping, loader.store, loader.alternatives, not_read=rest.not_read)


def _source_name(source: str) -> str:
    """How a message names a source: a local file by its own name (an upload's path is a temporary folder that
    means nothing to the person who uploaded it), a Hub dataset by its id."""
    path = Path(source).expanduser()
    return path.name if path.is_file() else source


class _Loader:
    """Turns the readers' blocks of raw rows into records as they come: the first blocks wait until enough rows
    are in to detect the layout (SAMPLE_ROWS), then every block is mapped, handed to `on_records(records, label)`
    (the checks, while the rows are at hand) and stored (studio.data.record_store: on disk past a megabyte)."""

    def __init__(self, mapping: FieldMapping | None, overrides: dict[str, str] | None, on_records=None):
        self.given, self.overrides, self.on_records = mapping, overrides, on_records
        self.mapping: FieldMapping | None = None
        self.alternatives: list[FieldMapping] = []
        self.store = RecordStore()
        self.waiting: list[tuple[list, str]] | None = []  # blocks read before the layout is known
        self.sampled = 0
        self.unknown_reasons: dict[tuple, list] = {}  # fields -> [reason, first row number, rows given it]

    def take(self, rows: list, label: str, done: float | None = None) -> None:
        if self.waiting is not None:
            self.waiting.append((rows, label))
            self.sampled += sum(1 for _, row, _ in rows if type(row) is dict)
            if self.sampled < SAMPLE_ROWS:
                return
            self._choose()
            return
        self._map(rows, label)

    def finish(self) -> None:
        if self.waiting is not None:
            self._choose()

    def _choose(self) -> None:
        waiting, self.waiting = self.waiting, None
        sample = _sample(row for rows, _ in waiting for _, row, _ in rows)
        self.mapping, self.alternatives = _choose_mapping(sample, self.given, self.overrides)
        for rows, label in waiting:
            self._map(rows, label)

    def _map(self, raw_rows: list, label: str) -> None:
        mapping = self.mapping
        records = []
        append = records.append
        # Most rows people bring are one prompt and one reply; map those inline (this loop runs per row)
        # and leave everything else to normalize_row.
        simple = mapping is not None and not (mapping.system or mapping.reasoning or mapping.input)
        pair = simple and mapping.turns is None and mapping.prompt is not None and mapping.response is not None
        turn_list = simple and mapping.turns is not None and mapping.response is None
        prompt_field, response_field, turns_field = (
            (mapping.prompt, mapping.response, mapping.turns) if simple else (None,) * 3)
        used = _used_fields(mapping) if mapping is not None else frozenset()
        unknown_reasons = self.unknown_reasons
        for number, row, error in raw_rows:
            if pair and type(row) is dict:
                prompt, response = row.get(prompt_field), row.get(response_field)
                if type(prompt) is str and type(response) is str:
                    if len(row) == 2:
                        append(Record(number, [("user", prompt), ("assistant", response)]))
                    else:
                        append(Record(number, [("user", prompt), ("assistant", response)], None,
                                      {key: value for key, value in row.items() if key not in used}))
                    continue
            elif turn_list and type(row) is dict:
                turns = row.get(turns_field)
                if type(turns) is list and len(turns) == 2:
                    first, second = turns
                    if type(first) is dict and type(second) is dict and len(first) == 2 and len(second) == 2:
                        prompt, response = first.get("content"), second.get("content")
                        if (first.get("role") == "user" and second.get("role") == "assistant"
                                and type(prompt) is str and type(response) is str):
                            if len(row) == 1:
                                append(Record(number, [("user", prompt), ("assistant", response)]))
                            else:
                                append(Record(number, [("user", prompt), ("assistant", response)], None,
                                              {key: value for key, value in row.items() if key not in used}))
                            continue
            if error is not None:
                append(Record(number, problem=(getattr(error, "code", "parse_error"), str(error))))
            elif mapping is None:
                key = tuple(row) if type(row) is dict else (type(row).__name__,)
                known = unknown_reasons.get(key)
                if known is None:
                    known = unknown_reasons[key] = [_unknown_format_reason(row), number, 0]
                known[2] += 1
                if known[2] <= FULL_REASONS:
                    message = f"{label} {number}: {known[0]}"
                else:
                    message = (f"{label} {number}: the same fields as {label} {known[1]}, which no known layout "
                               "fits (see it)")
                append(Record(number, problem=("unknown_format", message)))
            else:
                try:
                    messages = normalize_row(row, mapping)
                except _Unmappable as reason:
                    if reason.code == "unknown_format":
                        message = (f"{label} {number} does not fit the {mapping.format} format: {reason}; "
                                   "fix the row or override the field mapping")
                    else:
                        message = f"{label} {number}: {reason}"
                    append(Record(number, problem=(reason.code, message)))
                    continue
                append(Record(number, messages, None,
                              {key: value for key, value in row.items() if key not in used} or None))
        if self.on_records is not None:
            self.on_records(records, label)
        self.store.extend(records)


__all__ = ["Dataset", "Record", "load_dataset", "paused_gc"]
