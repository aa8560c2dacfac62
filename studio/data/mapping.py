"""Field mappings: the layouts, the field families, normalizing a row, the user's overrides.

A `FieldMapping` says which fields of a row hold the prompt, the reasoning, the answer, the system prompt or
the list of turns. `normalize_row` turns one row into chat messages as (role, content) pairs, whose last
assistant content carries `<think>…</think>` then the answer; a row that does not fit raises `_Unmappable`
with its issue code. `parse_mapping_overrides` applies what the user named (the CLI's --field, the Data tab's
Field mapping) to a detected mapping. Detection itself, which builds candidates from the field families below
and scores them, is `studio.data.detect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

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


# A field name as the families spell it: lower case, runs of `-` and spaces as `_`.
def _norm(name: object) -> str:
    return re.sub(r"[\s-]+", "_", str(name).strip().lower())


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


__all__ = [
    "FieldMapping", "FORMATS", "FORMAT_DESCRIPTIONS", "MAPPING_KEYS", "NO_FIELD", "normalize_row",
    "parse_mapping_overrides",
]
