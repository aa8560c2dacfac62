"""Layout detection by evidence, not by one fixed field name.

Candidate mappings are built from the fields of a sample of rows (field families matched case-insensitively:
`Question`, `Complex_CoT`, `deepseek_reasoning`, any list of turns…), the sample is normalized under each, and
the mapping that carries R1 reasoning for the most rows wins (then the one that maps the most rows, then a fixed
priority). The others that map at least one row are kept as `Dataset.alternatives`, best first. For a row no
candidate reads, `_unknown_format_reason` guesses loosely which field holds what and says how to name them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from studio.config import FOREIGN_THINK_TAGS, THINK_CLOSE, THINK_OPEN
from studio.data.mapping import (
    _KEY_ATTRIBUTES, _PART_NAMES, ANSWER_FIELDS, ANSWER_SUFFIXES, FORMATS, PROMPT_FIELDS, PROMPT_SUFFIXES,
    REASONING_FIELDS, REASONING_SUFFIXES, ROLE_ALIASES, SYSTEM_FIELDS, TURN_FIELDS, FieldMapping, _fields_list,
    _join_words, _kind, _norm, _text, _Unmappable, normalize_row,
)

SAMPLE_ROWS = 500  # detection reads this many rows, whatever the file's size


_FLAG = re.compile(r"[A-Za-z0-9_-]{1,12}")  # "on", "off", "true", "1": a switch, not reasoning text
_MARKERS = tuple(dict.fromkeys((THINK_OPEN, THINK_CLOSE, "◁think▷", "◁/think▷",
                                *(tag for pair in FOREIGN_THINK_TAGS for tag in pair))))


def _has_marker(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def _looks_like_reasoning(text: str) -> bool:
    text = text.strip()
    return bool(text) and not _FLAG.fullmatch(text)


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


__all__ = ["candidate_mappings", "detect_mapping", "detect_mappings"]
