"""Reading datasets: files (JSONL, JSON, CSV, Parquet) and Hub ids; layout detection; normalization.

Every row becomes a `Record`: its number in the source (the 1-based line for JSONL, the 1-based record
otherwise) and its chat messages as (role, content) pairs, whose last assistant content carries
`<think>…</think>` then the answer. Rows that cannot be parsed or mapped keep their number and a
`problem` (code, message) so the checks report them and the other rows still load.

The layout is detected by evidence, not by one fixed field name: candidate mappings are built from the fields
of a sample of rows (field families matched case-insensitively: `Question`, `Complex_CoT`,
`deepseek_reasoning`, any list of turns…), the sample is normalized under each, and the mapping that carries
R1 reasoning for the most rows wins (then the one that maps the most rows, then a fixed priority). The others
that map at least one row are kept as `Dataset.alternatives`, best first.
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

from studio.config import FOREIGN_THINK_TAGS, THINK_CLOSE, THINK_OPEN
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
TURN_LAYOUTS = ("conversation", "messages", "sharegpt")
PAIR_LAYOUTS = ("query_response", "alpaca", "reasoning_field")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

# The value that names no field in an override ("system=-": this mapping has no system prompt).
NO_FIELD = "-"

# Override keys (the CLI's --field KEY=NAME, the Data tab's Field mapping, FieldMapping.to_overrides()).
MAPPING_KEYS: dict[str, str] = {
    "layout": "the layout: " + ", ".join(FORMATS) + " (blank: detected)",
    "format": "the same as layout",
    "prompt": "the field with the user's question",
    "reasoning": "the field with the chain of thought, put inside <think>…</think> (- for none)",
    "answer": "the field with the final answer, or the whole reply with inline <think> (also: response)",
    "system": "the field with a system prompt (- for none)",
    "turns": "the field with the list of turns ({role, content} or {from, value})",
    "input": "alpaca's extra input, appended to the prompt (- for none)",
}
_KEY_ALIASES = {"format": "layout", "response": "answer"}
_KEY_ATTRIBUTES = {"prompt": "prompt", "reasoning": "reasoning", "answer": "response", "system": "system",
                   "turns": "turns", "input": "input"}
_ATTRIBUTE_KEYS = {attribute: key for key, attribute in _KEY_ATTRIBUTES.items()}
_PART_NAMES = {"prompt": "the prompt", "response": "the answer", "reasoning": "the reasoning",
               "system": "the system prompt", "turns": "the turns", "input": "the extra input"}

# Field families, by normalized name (lower case, `-` and spaces as `_`), in order of preference.
PROMPT_FIELDS = ("query", "question", "problem", "prompt", "instruction", "input", "user_input", "user_prompt",
                 "user", "human", "request", "task")
PROMPT_SUFFIXES = ("_question", "_problem", "_query", "_instruction")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking", "think", "thoughts", "thought", "cot",
                    "chain_of_thought", "complex_cot", "thinking_trajectories", "thinking_trajectory",
                    "reasoning_trace", "thinking_process", "thought_process", "rationale")
REASONING_SUFFIXES = ("_thinking_trajectory", "_thinking_trajectories", "_reasoning_content", "_reasoning",
                      "_thinking", "_thoughts", "_cot")
ANSWER_FIELDS = ("response", "answer", "output", "content", "completion", "attempt", "generated_solution",
                 "solution", "final_answer", "reply")
ANSWER_SUFFIXES = ("_attempt", "_solution", "_response", "_answer", "_output", "_completion")
SYSTEM_FIELDS = ("system", "system_prompt", "system_message")
TURN_FIELDS = ("conversation", "messages", "conversations")  # preferred in this order on a tie
# Turn-level reasoning beside `content` (vLLM, Qwen3), in order of preference.
TURN_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")

ROLE_ALIASES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system", "developer": "system",
}

SAMPLE_ROWS = 500  # detection reads this many rows, whatever the file's size
MAX_ALTERNATIVES = 8


class DatasetUnreadable(Exception):
    """The file or Hub dataset cannot be read at all (as opposed to some bad rows)."""


@dataclass
class FieldMapping:
    """Which fields of a row hold what. Detected per file; every field can be overridden.

    With `turns` set the row's turns are read from that list; `response` (and `reasoning`) then add the final
    assistant reply to turns that end with the user (dolphin-r1, Llama-Nemotron). Without `turns`, the row is
    one prompt and one reply. `system` is a top-level system prompt, kept in every layout.
    """

    format: str
    prompt: str | None = None
    response: str | None = None
    reasoning: str | None = None
    input: str | None = None  # alpaca's optional extra input
    system: str | None = None
    turns: str | None = None  # the list of turns (conversation, messages, sharegpt)
    # What detection saw: {"rows": sampled, "mapped": rows that map cleanly, "with_reasoning": rows with R1 reasoning}.
    evidence: dict | None = field(default=None, compare=False, repr=False)

    def parts(self) -> dict[str, str]:
        """The parts this mapping reads, {attribute: the row's field}."""
        return {name: getattr(self, name) for name in _ATTRIBUTE_KEYS if getattr(self, name)}

    def describe(self) -> str:
        return f"{self.format} (" + ", ".join(f"{k}={v!r}" for k, v in self.parts().items()) + ")"

    def to_json(self) -> dict:
        """The mapping as the report states it: the layout, the field that holds each part, the evidence."""
        return {"layout": self.format, "prompt": self.prompt, "reasoning": self.reasoning,
                "answer": self.response, "system": self.system, "turns": self.turns, "input": self.input,
                "evidence": self.evidence}

    def to_overrides(self) -> dict[str, str]:
        """Overrides that make `load_dataset(path, overrides=...)` read the rows with exactly this mapping.

        Every key the layout uses is given; a part this mapping does not read is NO_FIELD ("-").
        """
        keys = (("turns", "answer", "reasoning", "system") if self.format in TURN_LAYOUTS
                else ("prompt", "answer", "reasoning", "system", "input"))
        overrides = {"layout": self.format}
        for key in keys:
            overrides[key] = getattr(self, _KEY_ATTRIBUTES[key]) or NO_FIELD
        return overrides


DEFAULT_MAPPINGS = {
    "query_response": FieldMapping("query_response", prompt="query", response="response"),
    "conversation": FieldMapping("conversation", turns="conversation"),
    "messages": FieldMapping("messages", turns="messages"),
    "alpaca": FieldMapping("alpaca", prompt="instruction", input="input", response="output", system="system"),
    "sharegpt": FieldMapping("sharegpt", turns="conversations", system="system"),
    "reasoning_field": FieldMapping("reasoning_field"),
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
# Normalization


class _Unmappable(Exception):
    """The row does not fit the mapping; `code` is the issue code (unknown_format, missing_field, wrong_type)."""

    def __init__(self, message: str, code: str = "unknown_format"):
        super().__init__(message)
        self.code = code


def _kind(value: object) -> str:
    """What a value is, in words, for a message."""
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _wrong_type(where: str, value: object) -> _Unmappable:
    return _Unmappable(f"{where} is {_kind(value)}, expected text", "wrong_type")


_REASONING_BLOCKS = frozenset(("reasoning", "thinking", "thought", "reasoning_content"))
_TEXT_BLOCKS = frozenset(("text", "output_text", "input_text"))


def _content(value: object, where: str, numbers: bool = True) -> tuple[str, str]:
    """(reasoning, text) of a field or turn content: text, a list of strings (joined with blank lines), or
    content blocks — OpenAI {type: text, text}, LLaMA-Factory {type: text|reasoning, value}, thinking blocks
    {type: thinking, thinking}. Raises wrong_type for an object, a boolean or a nested list."""
    kind = type(value)
    if kind is str:
        return "", value
    if value is None:
        return "", ""
    if kind is int or kind is float:
        if not numbers:
            raise _wrong_type(where, value)
        return "", "" if value != value else str(value)  # NaN: an empty Parquet/pandas cell
    if kind is dict and "type" in value:
        value, kind = [value], list
    if kind is not list:
        raise _wrong_type(where, value)
    if all(type(part) is str for part in value):
        return "", "\n\n".join(part for part in value if part.strip())
    reasoning, text = [], []
    for index, part in enumerate(value, 1):
        if type(part) is str:
            text.append(part)
            continue
        if type(part) is not dict:
            raise _Unmappable(f"{where}: part {index} is {_kind(part)}, expected text or a {{type, text}} block",
                              "wrong_type")
        block = part.get("type")
        if block is not None and type(block) is not str:
            raise _Unmappable(f"{where}: block {index} has a type that is {_kind(block)}, expected text such as "
                              "\"text\"", "wrong_type")
        if block in _REASONING_BLOCKS:
            body = next((part[key] for key in ("thinking", "reasoning", "value", "text", "content")
                         if part.get(key) is not None), "")
            target = reasoning
        elif block is None or block in _TEXT_BLOCKS:
            body = next((part[key] for key in ("text", "value", "content") if part.get(key) is not None), "")
            target = text
        else:  # images, audio, tool calls, redacted thinking: nothing to train on as text
            continue
        if type(body) is not str:
            raise _Unmappable(f"{where}: block {index} ({block or 'text'}) holds {_kind(body)}, expected text",
                              "wrong_type")
        target.append(body)
    return "\n\n".join(reasoning), "".join(text)


def _text(value: object, what: str) -> str:
    """The text of a top-level field (reasoning blocks in it are kept as text)."""
    reasoning, text = _content(value, f"field `{what}`")
    return f"{reasoning}\n\n{text}" if reasoning else text


def _fields_list(row: dict, limit: int = 30) -> str:
    names = sorted(map(str, row))
    shown = ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")
    return shown or "none"


def _missing(row: dict, name: str | None, part: str) -> _Unmappable:
    key = _ATTRIBUTE_KEYS[part]
    if name is None:
        return _Unmappable(f"the mapping names no field for {_PART_NAMES[part]}; give it with --field {key}=NAME "
                           "(or the Data tab's Field mapping)", "missing_field")
    return _Unmappable(f"field `{name}` ({_PART_NAMES[part]}) is missing; the row has fields {_fields_list(row)}; "
                       f"fix the name with --field {key}=NAME (or the Data tab's Field mapping)", "missing_field")


def _field(row: dict, name: str | None, part: str) -> object:
    if name is None or name not in row:
        raise _missing(row, name, part)
    return row[name]


_PLAIN_ROLES = frozenset(("user", "assistant", "system"))


def _turns(row: dict, name: str, messages: list[tuple[str, str]]) -> None:
    turns = _field(row, name, "turns")
    if type(turns) is not list:
        raise _Unmappable(f"field `{name}` must be a list of turns, found {_kind(turns)}")
    append = messages.append
    for index, turn in enumerate(turns, 1):
        if type(turn) is dict:
            if len(turn) == 2:
                role, content = turn.get("role"), turn.get("content")
                if type(role) is str and role in _PLAIN_ROLES and type(content) is str:  # the common case, kept cheap
                    append((role, content))
                    continue
        else:
            raise _Unmappable(f"turn {index} of `{name}` is {_kind(turn)}, expected an object with a role and "
                              "content", "wrong_type")
        role = turn.get("role")
        if role is None:
            role = turn.get("from")
        if role is None:
            raise _Unmappable(f"turn {index} of `{name}` has no `role` (or `from`)")
        where = f"turn {index} of `{name}`"
        if type(role) is not str:
            raise _Unmappable(f"{where}: the role is {_kind(role)}, expected text such as \"user\"", "wrong_type")
        role = ROLE_ALIASES.get(role.strip().lower(), role)
        content_key = next((key for key in ("content", "value", "text") if turn.get(key) is not None), "content")
        reasoning, text = _content(turn.get(content_key), f"{where}: the {content_key}", numbers=False)
        for key in TURN_REASONING_KEYS:
            value = turn.get(key)
            if value is not None:
                extra_reasoning, extra_text = _content(value, f"{where}: the {key}", numbers=False)
                reasoning = "\n\n".join(part for part in (extra_reasoning, extra_text, reasoning) if part.strip())
                break
        if reasoning.strip() and role == "assistant":
            text = join_reasoning(reasoning, text)
        append((role, text))


def _reply(row: dict, mapping: FieldMapping) -> str:
    """The assistant reply from the answer field (with inline <think> or not) and the reasoning field."""
    reasoning, answer = "", ""
    if mapping.response:
        reasoning, answer = _content(_field(row, mapping.response, "response"), f"field `{mapping.response}`")
    if mapping.reasoning:
        field_reasoning = _text(_field(row, mapping.reasoning, "reasoning"), mapping.reasoning)
        reasoning = f"{field_reasoning}\n\n{reasoning}" if reasoning.strip() else field_reasoning
    # An empty reasoning field is left without tags so the checks call it missing_think.
    return join_reasoning(reasoning, answer) if reasoning.strip() else answer


def normalize_row(row: object, mapping: FieldMapping) -> list[tuple[str, str]]:
    """Chat messages of one row; raises _Unmappable (with its issue code) when the row does not fit."""
    if type(row) is not dict:
        raise _Unmappable(f"expected an object with fields, found {_kind(row)}")
    messages: list[tuple[str, str]] = []
    if mapping.turns:
        _turns(row, mapping.turns, messages)
        if mapping.response or mapping.reasoning:  # turns that end with the user, the reply beside them
            messages.append(("assistant", _reply(row, mapping)))
    else:
        prompt = _text(_field(row, mapping.prompt, "prompt"), mapping.prompt)
        if mapping.input:
            extra = row.get(mapping.input)
            if extra is not None and extra != "":
                extra = _text(extra, mapping.input)
                if extra.strip():
                    prompt = f"{prompt}\n\n{extra}"
        if not mapping.response and not mapping.reasoning:
            raise _missing(row, None, "response")
        messages.append(("user", prompt))
        messages.append(("assistant", _reply(row, mapping)))
    if mapping.system:
        system = row.get(mapping.system)
        if system is not None and system != "":
            system = _text(system, mapping.system)
            if system.strip() and not (messages and messages[0][0] == "system"):
                messages.insert(0, ("system", system))
    return messages


def _used_fields(mapping: FieldMapping) -> frozenset[str]:
    return frozenset(mapping.parts().values())


# --------------------------------------------------------------------------------------------------
# Layout detection


_FLAG = re.compile(r"[A-Za-z0-9_-]{1,12}")  # "on", "off", "true", "1": a switch, not reasoning text
_MARKERS = tuple(dict.fromkeys((THINK_OPEN, THINK_CLOSE, "◁think▷", "◁/think▷",
                                *(tag for pair in FOREIGN_THINK_TAGS for tag in pair))))


def _has_marker(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def _looks_like_reasoning(text: str) -> bool:
    text = text.strip()
    return bool(text) and not _FLAG.fullmatch(text)


def _norm(name: object) -> str:
    return re.sub(r"[\s-]+", "_", str(name).strip().lower())


def _family(name: str, names: tuple[str, ...], suffixes: tuple[str, ...]) -> tuple[int, str | None] | None:
    """(rank, prefix) when the normalized name is in the family, else None. `gemini_attempt` → (…, "gemini")."""
    if name in names:
        return names.index(name), None
    for rank, suffix in enumerate(suffixes):
        if name.endswith(suffix) and len(name) > len(suffix):
            return len(names) + rank, name[: -len(suffix)]
    return None


def _is_turn(value: object) -> bool:
    return type(value) is dict and (value.get("role") is not None or value.get("from") is not None)


def _is_turn_list(value: object) -> bool:
    return type(value) is list and bool(value) and any(_is_turn(turn) for turn in value[:3])


def _turn_role(turn: object) -> str | None:
    if type(turn) is not dict:
        return None
    role = turn.get("role")
    if role is None:
        role = turn.get("from")
    return ROLE_ALIASES.get(role.strip().lower(), role) if type(role) is str else None


@dataclass
class _Profile:
    """What the sample holds in one field."""

    name: str
    order: int
    text: int = 0  # rows with text, a list of strings or content blocks
    turns: int = 0  # a list of turn objects
    ends_with_user: int = 0
    uses_from: int = 0  # turns with `from` / `value` (ShareGPT)
    numbers: int = 0  # rows with a number (an answer may be one)


def _profiles(sample: list[dict]) -> dict[str, _Profile]:
    profiles: dict[str, _Profile] = {}
    for row in sample:
        for name, value in row.items():
            profile = profiles.get(name)
            if profile is None:
                profile = profiles[name] = _Profile(name, len(profiles))
            kind = type(value)
            if kind is str:
                profile.text += 1
            elif kind is list:
                if _is_turn_list(value):
                    profile.turns += 1
                    first = next((turn for turn in value if _is_turn(turn)), {})
                    profile.uses_from += first.get("role") is None and first.get("from") is not None
                    profile.ends_with_user += _turn_role(value[-1]) == "user"
                elif all(type(part) in (str, dict) for part in value):
                    profile.text += 1
            elif kind is int or kind is float:
                profile.numbers += 1
    return profiles


def _turns_layout(profile: _Profile) -> str:
    if profile.uses_from * 2 > profile.turns:
        return "sharegpt"
    return "conversation" if _norm(profile.name) == "conversation" else "messages"


def _vendor_rank(prefix: str) -> int:
    return 0 if "deepseek" in prefix or prefix in ("r1", "deepseek_r1") else 1


def _pair_options(reasonings, answers, taken: set[str]):
    """(priority, reasoning, answer) pairs: fields that share a prefix first (DeepSeek's before others),
    a trajectory with the attempt, then the families' order."""
    options = []
    taken = taken - {None}
    for reasoning, r_rank, r_prefix in [*reasonings, (None, 0, None)]:
        if reasoning in taken:
            continue
        for answer, a_rank, a_prefix in answers:
            if answer in taken or answer == reasoning:
                continue
            if reasoning is None:
                pairing = (1, 2, 0)
            elif r_prefix and r_prefix == a_prefix:
                pairing = (0, 0, _vendor_rank(r_prefix))
            elif r_prefix and a_prefix:
                pairing = (0, 3, 0)  # gemini's reasoning with DeepSeek's answer: the worst of both
            else:  # at most one of them has a prefix; s1K's `thinking_trajectories` goes with `attempt`
                trajectory = "trajector" in _norm(reasoning) and "attempt" in _norm(answer)
                pairing = (0, 1 if trajectory else 2, _vendor_rank(r_prefix) if r_prefix else 0)
            options.append(((*pairing, a_rank, r_rank), reasoning, answer))
    options.sort(key=lambda option: option[0])
    return options


MAX_CANDIDATES = 48


def candidate_mappings(sample: list[dict]) -> list[FieldMapping]:
    """Every mapping the sample's fields suggest, in priority order (the tie-break after the evidence)."""
    profiles = _profiles(sample)
    by_order = sorted(profiles.values(), key=lambda profile: profile.order)

    def family(names, suffixes, numbers=False):
        found = []
        for profile in by_order:
            if not (profile.text or (numbers and profile.numbers)):
                continue
            match = _family(_norm(profile.name), names, suffixes)
            if match:
                found.append((profile.name, *match))
        found.sort(key=lambda item: (item[1], profiles[item[0]].order))
        return found

    prompts = family(PROMPT_FIELDS, PROMPT_SUFFIXES)
    reasonings = family(REASONING_FIELDS, REASONING_SUFFIXES)
    answers = family(ANSWER_FIELDS, ANSWER_SUFFIXES, numbers=True)
    system = next((profile.name for profile in by_order
                   if profile.text and _norm(profile.name) in SYSTEM_FIELDS), None)
    turn_lists = sorted((profile for profile in by_order if profile.turns),
                        key=lambda p: (TURN_FIELDS.index(_norm(p.name)) if _norm(p.name) in TURN_FIELDS else 9,
                                       -p.turns, p.order))
    ranked: list[tuple[tuple, FieldMapping]] = []
    for t_rank, turns in enumerate(turn_lists):
        form = _turns_layout(turns)
        if turns.ends_with_user:
            for priority, reasoning, answer in _pair_options(reasonings, answers, {turns.name, system}):
                ranked.append(((0, priority, t_rank), FieldMapping(form, response=answer, reasoning=reasoning,
                                                                   system=system, turns=turns.name)))
        ranked.append(((0, (0,), t_rank), FieldMapping(form, system=system, turns=turns.name)))
    for p_rank, (prompt, _, _) in enumerate(prompts):
        extra_input = None
        if _norm(prompt) == "instruction":
            extra_input = next((p.name for p in by_order if p.text and _norm(p.name) == "input"), None)
        for priority, reasoning, answer in _pair_options(reasonings, answers, {prompt, system, extra_input}):
            if reasoning:
                form = "reasoning_field"
            else:
                form = "alpaca" if _norm(prompt) == "instruction" else "query_response"
            ranked.append(((1, priority, p_rank), FieldMapping(form, prompt=prompt, response=answer,
                                                               reasoning=reasoning, input=extra_input,
                                                               system=system)))
    ranked.sort(key=lambda item: item[0])
    unique: dict[tuple, FieldMapping] = {}
    for _, mapping in ranked:
        unique.setdefault((mapping.format, *mapping.parts().items()), mapping)
    return list(unique.values())[:MAX_CANDIDATES]


def _score(mapping: FieldMapping, sample: list[dict]) -> dict:
    """How the sample reads under a mapping: rows it normalizes, rows it maps cleanly (a non-empty prompt and a
    final assistant reply), rows whose reply carries R1 reasoning."""
    readable = mapped = with_reasoning = 0
    for row in sample:
        try:
            messages = normalize_row(row, mapping)
        except _Unmappable:
            continue
        readable += 1
        if not messages:
            continue
        role, reply = messages[-1]
        if role != "assistant" or not reply.strip():
            continue
        if not any(who == "user" and content.strip() for who, content in messages):
            continue
        mapped += 1
        if mapping.reasoning:
            # The reasoning field must hold reasoning ("on"/"off" is a switch) and the answer must not carry
            # its own (then the mapping without the reasoning field reads the row right).
            answer = _text(row.get(mapping.response), mapping.response) if mapping.response else ""
            with_reasoning += (_looks_like_reasoning(_text(row.get(mapping.reasoning), mapping.reasoning))
                               and not _has_marker(answer))
        else:
            with_reasoning += _has_marker(reply)
    return {"rows": len(sample), "mapped": mapped, "with_reasoning": with_reasoning, "readable": readable}


def _evidence(score: dict) -> dict:
    return {"rows": score["rows"], "mapped": score["mapped"], "with_reasoning": score["with_reasoning"]}


def detect_mappings(rows: list[dict], sample_size: int = SAMPLE_ROWS) -> list[FieldMapping]:
    """The mappings that read at least one of the first rows, best first, each with its `evidence`.

    Best: carries the reasoning for the most rows, then maps the most rows, then the candidates' priority.
    """
    sample = _sample(rows, sample_size)
    scored = []
    for priority, mapping in enumerate(candidate_mappings(sample)):
        score = _score(mapping, sample)
        if score["readable"]:
            scored.append(((-score["with_reasoning"], -score["mapped"], -score["readable"], priority),
                           replace(mapping, evidence=_evidence(score))))
    scored.sort(key=lambda item: item[0])
    return [mapping for _, mapping in scored]


def detect_mapping(rows: list[dict]) -> FieldMapping | None:
    """The best mapping for the first rows, or None when none fits any."""
    mappings = detect_mappings(rows)
    return mappings[0] if mappings else None


def _sample(rows, size: int = SAMPLE_ROWS) -> list[dict]:
    sample = []
    for row in rows:
        if type(row) is dict:
            sample.append(row)
            if len(sample) >= size:
                break
    return sample


def _guess(row: dict) -> dict[str, str]:
    """A loose guess at which field holds what, for a row no candidate reads ({key: field})."""
    guess: dict[str, str] = {}
    loose = {
        "turns": (),
        "answer": ("answer", "respon", "output", "completion", "solution", "reply", "attempt", "assistant"),
        "reasoning": ("reason", "think", "thought", "cot", "rationale", "trajector"),
        "prompt": ("question", "prompt", "query", "problem", "instruct", "input", "user", "ask", "task"),
    }
    for name, value in row.items():
        if _is_turn_list(value):
            guess.setdefault("turns", name)
        elif type(value) is str and _has_marker(value):
            guess.setdefault("answer", name)
    for key, words in loose.items():
        if key in guess:
            continue
        for name in row:
            if name not in guess.values() and any(word in _norm(name) for word in words):
                guess[key] = name
                break
    if "turns" in guess:
        return {"turns": guess["turns"]}
    strings = [name for name, value in row.items() if type(value) is str and name not in guess.values()]
    if "answer" in guess and "prompt" not in guess and len(strings) == 1:
        guess["prompt"] = strings[0]
    return guess


def _unknown_format_reason(row: object) -> str:
    """Why no layout fits the row and how to name its fields (what follows "line N: ")."""
    if type(row) is not dict:
        return (f"expected an object with fields, found {_kind(row)}; every row must be one object "
                "(e.g. {\"prompt\": …, \"answer\": …})")
    guess = _guess(row)
    if "turns" in guess:
        order: tuple[str, ...] = ("turns",)
    elif "answer" in guess and type(row[guess["answer"]]) is str and _has_marker(row[guess["answer"]]):
        order = ("prompt", "answer")  # the reasoning is inline in the answer
    else:
        order = ("prompt", "answer", "reasoning")
    found = [f"{key}={guess[key]}" for key in order if key in guess]
    lost = [_PART_NAMES[_KEY_ATTRIBUTES[key]] for key in order if key not in guess]
    parts = []
    if found:
        parts.append("the likely mapping: " + ", ".join(found))
    if lost:
        parts.append("could not find " + _join_words(lost, "or"))
    flags = " ".join(f"--field {key}={guess.get(key, 'NAME')}" for key in order)
    if not found:
        flags += " (or --field turns=NAME for a list of turns)"
    return (f"no known layout fits its fields ({_fields_list(row)}); " + "; ".join(parts)
            + f". Name the fields with {flags}, or in the Data tab's \"Field mapping\" box. Known layouts: "
            + ", ".join(FORMATS))


# --------------------------------------------------------------------------------------------------
# Loading


def load_dataset(source: str, mapping: FieldMapping | None = None,
                 overrides: dict[str, str] | None = None) -> Dataset:
    """Read a file or Hub id into records; detects the mapping unless one is given, then applies the
    user's overrides (e.g. {"prompt": "question"}, or FieldMapping.to_overrides()) to it."""
    with paused_gc():
        return _load_dataset(source, mapping, overrides)


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


def _load_dataset(source: str, mapping: FieldMapping | None, overrides: dict[str, str] | None) -> Dataset:
    kind, raw_rows = read_raw_rows(source)
    if not raw_rows:
        raise DatasetUnreadable(f"{source} holds no rows.")
    sample = _sample(row for _, row, _ in raw_rows)
    mapping, alternatives = _choose_mapping(sample, mapping, overrides)
    label = "line" if kind == "jsonl" else "record"
    records = []
    append = records.append
    # Most rows people bring are one prompt and one reply; map those inline (this loop runs per row)
    # and leave everything else to normalize_row.
    simple = mapping is not None and not (mapping.system or mapping.reasoning or mapping.input)
    pair = simple and mapping.turns is None and mapping.prompt is not None and mapping.response is not None
    turn_list = simple and mapping.turns is not None and mapping.response is None
    prompt_field, response_field, turns_field = (mapping.prompt, mapping.response, mapping.turns) if simple else (None,) * 3
    used = _used_fields(mapping) if mapping is not None else frozenset()
    unknown_reasons: dict[tuple, str] = {}
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
            append(Record(number, problem=("parse_error", error)))
        elif mapping is None:
            key = tuple(row) if type(row) is dict else (type(row).__name__,)
            reason = unknown_reasons.get(key)
            if reason is None:
                reason = unknown_reasons[key] = _unknown_format_reason(row)
            append(Record(number, problem=("unknown_format", f"{label} {number}: {reason}")))
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
    return Dataset(source, kind, mapping, records, alternatives)


# --------------------------------------------------------------------------------------------------
# Overrides


class _IncompleteMapping(ValueError):
    """The overrides leave a part the layout needs without a field."""


def parse_mapping_overrides(base: FieldMapping | None, overrides: dict[str, str]) -> FieldMapping:
    """Apply user overrides such as {"layout": "alpaca", "prompt": "question"} to a detected mapping.

    Keys are MAPPING_KEYS (`format` = `layout`, `response` = `answer`); a value NO_FIELD ("-") names no field.
    Without a layout it is inferred: a list of turns → messages, prompt + answer (+ reasoning) →
    query_response (reasoning_field). Raises ValueError naming what is wrong or missing.
    """
    given: dict[str, str | None] = {}
    unknown = []
    for key, value in overrides.items():
        if value is None or not str(value).strip():
            continue
        name = _norm(key)
        name = _KEY_ALIASES.get(name, name)
        if name not in _KEY_ATTRIBUTES and name != "layout":
            unknown.append(str(key))
            continue
        value = str(value).strip()
        given[name] = None if value.lower() in (NO_FIELD, "none") else value
    if unknown:
        raise ValueError(f"unknown mapping field(s) {', '.join(sorted(unknown))}; use "
                         + ", ".join(key for key in MAPPING_KEYS if key != "format")
                         + " (response for answer and format for layout work too)")
    layout = given.pop("layout", None)
    fields = {_KEY_ATTRIBUTES[key]: value for key, value in given.items()}
    if layout is not None:
        if layout not in FORMATS:
            raise ValueError(f"unknown format {layout!r}; choose one of: {', '.join(FORMATS)}")
        turns = layout in TURN_LAYOUTS
        if base is not None and base.format == layout:
            start = base
        elif base is not None and bool(base.turns) == turns:  # the same kind: keep the fields it found
            start = replace(base, format=layout)
        else:
            start = DEFAULT_MAPPINGS[layout]
        excluded = ("prompt", "input") if turns else ("turns",)
        wrong = [name for name in excluded if fields.get(name)]
        if wrong:
            kind = ("a list of turns: give --field turns=NAME, or choose query_response, alpaca or "
                    "reasoning_field" if turns else
                    "one prompt and one reply: give --field prompt=NAME, or choose conversation, messages or "
                    "sharegpt")
            raise ValueError(f"the {layout} layout reads {kind} ({', '.join(_ATTRIBUTE_KEYS[n] for n in wrong)} "
                             "is not used there)")
        mapping = replace(start, **{**{name: None for name in excluded}, **fields}, evidence=None)
    else:
        turns_given, prompt_given = bool(fields.get("turns")), bool(fields.get("prompt"))
        if turns_given and prompt_given:
            raise ValueError("give either turns (a list of turns) or prompt (one question), not both")
        start = base or FieldMapping("query_response")
        if turns_given and not start.turns:
            start = FieldMapping("messages", system=start.system)
        elif prompt_given and not start.prompt:  # the reply's fields stay (turns + answer → prompt + answer)
            start = FieldMapping("query_response", response=start.response, reasoning=start.reasoning,
                                 system=start.system)
        mapping = replace(start, **fields, evidence=None)
        if mapping.turns:
            if mapping.format not in TURN_LAYOUTS:
                mapping = replace(mapping, format="messages")
        elif mapping.reasoning:
            mapping = replace(mapping, format="reasoning_field")
        elif mapping.format != "alpaca" and not mapping.input:
            mapping = replace(mapping, format="query_response")
        elif mapping.format != "alpaca":
            mapping = replace(mapping, format="alpaca")
    _check_complete(mapping)
    return mapping


def _join_words(words: list[str], last: str = "and") -> str:
    return ", ".join(words[:-1]) + f" {last} " + words[-1] if len(words) > 1 else words[0]


def _check_complete(mapping: FieldMapping) -> None:
    if mapping.format in TURN_LAYOUTS or mapping.turns:
        needed = ["turns"] if not mapping.turns else []
    else:
        needed = [part for part in ("prompt", "response") if not getattr(mapping, part)]
        if mapping.format == "reasoning_field" and not mapping.reasoning:
            needed.append("reasoning")
    if needed:
        keys = [_ATTRIBUTE_KEYS[part] for part in needed]
        raise _IncompleteMapping(
            f"the {mapping.format} layout needs " + _join_words([_PART_NAMES[part] for part in needed])
            + ": name the field" + ("s" if len(needed) > 1 else "") + " with "
            + " ".join(f"--field {key}=NAME" for key in keys) + " (or the Data tab's Field mapping)")


def dumps_jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


__all__ = [
    "Dataset", "DatasetUnreadable", "FieldMapping", "FORMATS", "FORMAT_DESCRIPTIONS", "MAPPING_KEYS", "NO_FIELD",
    "Record", "candidate_mappings", "detect_mapping", "detect_mappings", "load_dataset", "normalize_row",
    "parse_mapping_overrides", "dumps_jsonl",
]
