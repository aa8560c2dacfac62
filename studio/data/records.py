"""Reading datasets: files (JSONL, JSON, CSV, Parquet) and Hub ids; format detection; normalization.

Every row becomes a `Record`: its number in the source (the 1-based line for JSONL, the 1-based record
otherwise) and its chat messages as (role, content) pairs, whose last assistant content carries
`<think>…</think>` then the answer. Rows that cannot be parsed or mapped keep their number and a
`problem` (code, message) so the checks report them and the other rows still load.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson  # several times faster than json.loads; the checks must keep up with a bare parse

from studio.data.template import join_reasoning

FORMATS = ("query_response", "conversation", "messages", "alpaca", "sharegpt", "reasoning_field")
FORMAT_DESCRIPTIONS = {
    "query_response": "`query` / `response` fields, reasoning inside the response",
    "conversation": "`conversation`: a list of {role, content} turns",
    "messages": "OpenAI-style `messages`: a list of {role, content} turns",
    "alpaca": "Alpaca `instruction` / `input` / `output`",
    "sharegpt": "ShareGPT `conversations` with `from` / `value` turns",
    "reasoning_field": "the reasoning in its own field beside the answer",
}
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
PROMPT_FIELDS = ("prompt", "question", "query", "problem", "instruction", "input")
ANSWER_FIELDS = ("answer", "response", "output", "completion", "content", "solution")

ROLE_ALIASES = {
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system",
}


class DatasetUnreadable(Exception):
    """The file or Hub dataset cannot be read at all (as opposed to some bad rows)."""


@dataclass
class FieldMapping:
    """Which fields of a row hold what. Detected per file; every field can be overridden."""

    format: str
    prompt: str | None = None
    response: str | None = None
    reasoning: str | None = None
    input: str | None = None  # alpaca's optional extra input
    system: str | None = None
    turns: str | None = None  # the list of turns (conversation, messages, sharegpt)

    def describe(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "format" and v}
        return f"{self.format} (" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    def to_json(self) -> dict:
        """The mapping as the report states it: the layout and the field that holds each part."""
        return {"layout": self.format, "prompt": self.prompt, "reasoning": self.reasoning,
                "answer": self.response, "system": self.system, "turns": self.turns, "input": self.input}


DEFAULT_MAPPINGS = {
    "query_response": FieldMapping("query_response", prompt="query", response="response"),
    "conversation": FieldMapping("conversation", turns="conversation"),
    "messages": FieldMapping("messages", turns="messages"),
    "alpaca": FieldMapping("alpaca", prompt="instruction", input="input", response="output", system="system"),
    "sharegpt": FieldMapping("sharegpt", turns="conversations", system="system"),
}


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
    records: list[Record]
    alternatives: list[FieldMapping] = field(default_factory=list)  # other mappings that fit, best first
    _by_number: dict[int, Record] | None = field(default=None, repr=False, compare=False)

    def record(self, number: int) -> Record:
        """The record with this row number (KeyError when there is none)."""
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
# Reading raw rows


def read_raw_rows(source: str) -> tuple[str, list[tuple[int, object, str | None]]]:
    """(kind, [(number, row or None, parse error or None)]) for a file path or Hub id."""
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
            return readers[suffix](path)
        except DatasetUnreadable:
            raise
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetUnreadable(f"{path}: cannot read the file ({error}).") from None
    if looks_like_hub_id(source):
        return "hub", _read_hub(source)
    raise DatasetUnreadable(
        f"{source}: no such file, and not a Hub dataset id (owner/name). Check the path."
    )


def _parse_error(number: int, label: str, error: Exception) -> tuple[int, None, str]:
    return number, None, (f"{label} {number} is not valid JSON ({error.msg} at column {error.colno}); "
                          "fix or delete it")


def _read_jsonl(path: Path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    loads = orjson.loads
    try:
        # Fast path: every line parses (a blank line fails too and takes the careful path).
        if lines and not lines[-1].strip():
            lines.pop()
        return "jsonl", [(number, row, None) for number, row in enumerate(map(loads, lines), 1)]
    except orjson.JSONDecodeError:
        pass
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((number, loads(line), None))
        except orjson.JSONDecodeError as error:
            rows.append(_parse_error(number, "line", error))
    return "jsonl", rows


def _read_json(path: Path):
    data = path.read_bytes()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        # A .json file that holds one object per line is JSON Lines under another name.
        if data.lstrip().startswith(b"{") and b"\n" in data.strip():
            return _read_jsonl(path)
        raise DatasetUnreadable(
            f"{path.name} is not valid JSON ({error}). A .json file must hold a list of rows (or an "
            "object with a `data` list); for one object per line use .jsonl."
        ) from None
    if isinstance(document, dict):
        lists = [value for value in document.values() if isinstance(value, list)]
        if "data" in document and isinstance(document["data"], list):
            document = document["data"]
        elif len(lists) == 1:
            document = lists[0]
        else:
            document = [document]
    if not isinstance(document, list):
        raise DatasetUnreadable(f"{path.name}: expected a list of rows, found {type(document).__name__}.")
    return "json", [(number, row, None) for number, row in enumerate(document, 1)]


def _read_csv(path: Path):
    csv.field_size_limit(1 << 30)  # reasoning columns easily exceed the 128 KB default
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DatasetUnreadable(f"{path.name} is empty: a CSV needs a header row naming the fields.")
        for number, values in enumerate(reader, 1):
            if not values:
                continue
            if len(values) != len(header):
                rows.append((number, None,
                             f"record {number} has {len(values)} fields but the header has {len(header)}; "
                             "check quoting of commas and newlines"))
                continue
            rows.append((number, {key: _maybe_json(value) for key, value in zip(header, values)}, None))
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


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DatasetUnreadable(f"{path.name} is not a readable Parquet file ({error}).") from None
    return "parquet", [(number, row, None) for number, row in enumerate(table.to_pylist(), 1)]


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.endswith(FILE_SUFFIXES)


def _read_hub(source: str):
    """`owner/name` or `owner/name:split` (default split: train), through `datasets`."""
    repo_id, _, split = source.partition(":")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise DatasetUnreadable(
            f"{repo_id}: the Hugging Face Hub is switched off on this machine (HF_HUB_OFFLINE=1). "
            "Download the dataset where there is network and pass the file instead."
        )
    try:
        import datasets
    except ImportError:
        raise DatasetUnreadable("Reading Hub datasets needs the `datasets` package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(repo_id, split=split or "train")
    except Exception as error:  # network, auth and not-found errors all end here
        raise DatasetUnreadable(
            f"{repo_id}: could not load it from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "Check the id, the split and the network; private datasets need `huggingface-cli login`."
        ) from None
    return [(number, row, None) for number, row in enumerate(dataset, 1)]


# --------------------------------------------------------------------------------------------------
# Format detection


def detect_mapping(rows: list[dict]) -> FieldMapping | None:
    """The mapping that fits most of the first rows, or None when none fits any."""
    votes: dict[str, int] = {}
    mappings: dict[str, FieldMapping] = {}
    for row in rows[:200]:
        mapping = _mapping_for_row(row)
        if mapping:
            key = mapping.describe()
            votes[key] = votes.get(key, 0) + 1
            mappings[key] = mapping
    if not votes:
        return None
    return mappings[max(votes, key=votes.get)]


def _mapping_for_row(row: dict) -> FieldMapping | None:
    for key in ("conversation", "messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            if "from" in turns[0] or key == "conversations":
                return DEFAULT_MAPPINGS["sharegpt"] if key == "conversations" else replace(
                    DEFAULT_MAPPINGS["sharegpt"], turns=key)
            return DEFAULT_MAPPINGS["conversation" if key == "conversation" else "messages"]
    reasoning = next((name for name in REASONING_FIELDS if name in row), None)
    if reasoning:
        prompt = next((name for name in PROMPT_FIELDS if name in row), None)
        answer = next((name for name in ANSWER_FIELDS if name in row and name != prompt), None)
        if prompt and answer:
            return FieldMapping("reasoning_field", prompt=prompt, response=answer, reasoning=reasoning,
                                system="system" if "system" in row else None)
    if "query" in row and "response" in row:
        return DEFAULT_MAPPINGS["query_response"]
    if "instruction" in row and "output" in row:
        return DEFAULT_MAPPINGS["alpaca"]
    return None


# --------------------------------------------------------------------------------------------------
# Normalization


class _Unmappable(Exception):
    pass


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content blocks: [{"type": "text", "text": …}, …]
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in value)
    if isinstance(value, (int, float)):
        return str(value)
    raise _Unmappable(f"field `{what}` holds {type(value).__name__}, expected text")


def _field(row: dict, name: str) -> object:
    if name not in row:
        raise _Unmappable(f"field `{name}` is missing")
    return row[name]


_PLAIN_ROLES = frozenset(("user", "assistant", "system"))


def _turns(row: dict, mapping: FieldMapping) -> list[tuple[str, str]]:
    turns = _field(row, mapping.turns)
    if not isinstance(turns, list):
        raise _Unmappable(f"field `{mapping.turns}` must be a list of turns, found {type(turns).__name__}")
    messages = []
    if mapping.system and row.get(mapping.system):
        messages.append(("system", _text(row[mapping.system], mapping.system)))
    for index, turn in enumerate(turns, 1):
        if type(turn) is dict:
            role, content = turn.get("role"), turn.get("content")
            if role in _PLAIN_ROLES and type(content) is str:  # the common case, kept cheap
                messages.append((role, content))
                continue
        else:
            raise _Unmappable(f"turn {index} of `{mapping.turns}` is {type(turn).__name__}, expected an object")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role is None:
            raise _Unmappable(f"turn {index} of `{mapping.turns}` has no `role` (or `from`)")
        role = str(role)
        messages.append((ROLE_ALIASES.get(role.lower(), role), _text(content, f"{mapping.turns}[{index}]")))
    return messages


def normalize_row(row: object, mapping: FieldMapping) -> list[tuple[str, str]]:
    """Chat messages of one row; raises _Unmappable with the reason when the row does not fit."""
    if not isinstance(row, dict):
        raise _Unmappable(f"expected an object with fields, found {type(row).__name__}")
    form = mapping.format
    if form in ("conversation", "messages", "sharegpt"):
        return _turns(row, mapping)
    messages = []
    if mapping.system and row.get(mapping.system):
        messages.append(("system", _text(row[mapping.system], mapping.system)))
    prompt = _text(_field(row, mapping.prompt), mapping.prompt)
    if form == "alpaca" and mapping.input and row.get(mapping.input):
        prompt = f"{prompt}\n\n{_text(row[mapping.input], mapping.input)}"
    response = _text(_field(row, mapping.response), mapping.response)
    if form == "reasoning_field":
        reasoning = _text(row.get(mapping.reasoning), mapping.reasoning)
        # An empty reasoning field is left without tags so the checks call it missing_think.
        response = join_reasoning(reasoning, response) if reasoning.strip() else response
    messages.append(("user", prompt))
    messages.append(("assistant", response))
    return messages


def load_dataset(source: str, mapping: FieldMapping | None = None,
                 overrides: dict[str, str] | None = None) -> Dataset:
    """Read a file or Hub id into records; detects the mapping unless one is given, then applies the
    user's overrides (e.g. {"prompt": "question"}) to it."""
    with paused_gc():
        return _load_dataset(source, mapping, overrides)


def _load_dataset(source: str, mapping: FieldMapping | None, overrides: dict[str, str] | None) -> Dataset:
    kind, raw_rows = read_raw_rows(source)
    if not raw_rows:
        raise DatasetUnreadable(f"{source} holds no rows.")
    if mapping is None:
        mapping = detect_mapping([row for _, row, _ in raw_rows if isinstance(row, dict)])
    overrides = {key: value for key, value in (overrides or {}).items() if value}
    if overrides:
        mapping = parse_mapping_overrides(mapping, overrides)
    label = "line" if kind == "jsonl" else "record"
    records = []
    append = records.append
    # Most rows people bring are one prompt and one reply; map those inline (this loop runs per row)
    # and leave everything else to normalize_row.
    form = mapping.format if mapping is not None and not mapping.system else None
    pair = form == "query_response"
    turn_list = form in ("conversation", "messages")
    prompt_field, response_field, turns_field = (mapping.prompt, mapping.response, mapping.turns) if form else (None,) * 3
    for number, row, error in raw_rows:
        if pair and type(row) is dict:
            prompt, response = row.get(prompt_field), row.get(response_field)
            if type(prompt) is str and type(response) is str:
                append(Record(number, [("user", prompt), ("assistant", response)]))
                continue
        elif turn_list and type(row) is dict:
            turns = row.get(turns_field)
            if type(turns) is list and len(turns) == 2:
                first, second = turns
                if type(first) is dict and type(second) is dict:
                    prompt, response = first.get("content"), second.get("content")
                    if (first.get("role") == "user" and second.get("role") == "assistant"
                            and type(prompt) is str and type(response) is str):
                        append(Record(number, [("user", prompt), ("assistant", response)]))
                        continue
        if error is not None:
            append(Record(number, problem=("parse_error", error)))
        elif mapping is None:
            append(Record(number, problem=("unknown_format", _unknown_format_message(label, number, row))))
        else:
            try:
                append(Record(number, normalize_row(row, mapping)))
            except _Unmappable as reason:
                append(Record(number, problem=(
                    "unknown_format",
                    f"{label} {number} does not fit the {mapping.format} format: {reason}; "
                    "fix the row or override the field mapping")))
    return Dataset(source, kind, mapping, records)


def _unknown_format_message(label: str, number: int, row: object) -> str:
    fields = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
    return (f"{label} {number}: no known format fits its fields ({fields}); name the fields to use "
            f"(prompt/response/reasoning or turns) with a field mapping. Known formats: "
            + ", ".join(FORMATS))


def parse_mapping_overrides(base: FieldMapping | None, overrides: dict[str, str]) -> FieldMapping:
    """Apply user overrides such as {"format": "alpaca", "prompt": "question"} to a detected mapping."""
    overrides = {key: value for key, value in overrides.items() if value}
    form = overrides.pop("format", None) or (base.format if base else None)
    if form not in FORMATS:
        raise ValueError(f"unknown format {form!r}; choose one of: {', '.join(FORMATS)}")
    start = base if base and base.format == form else DEFAULT_MAPPINGS.get(form, FieldMapping(form))
    unknown = set(overrides) - set(FieldMapping.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown mapping field(s) {', '.join(sorted(unknown))}; "
                         f"use {', '.join(f for f in FieldMapping.__dataclass_fields__ if f != 'format')}")
    return replace(start, **overrides)


def dumps_jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


__all__ = [
    "Dataset", "DatasetUnreadable", "FieldMapping", "FORMATS", "FORMAT_DESCRIPTIONS", "Record",
    "detect_mapping", "load_dataset", "normalize_row", "parse_mapping_overrides", "dumps_jsonl",
]
