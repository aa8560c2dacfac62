"""How batch compare judges one reply, with no model and no gradio: the format check, the answer it takes out of
the reply, and whether that answer equals the reference.

Each judgement is a plain function of text so that the compare table, its summary, the JSON and the report all
say the same thing, and so that the comparison itself (`same_answer`) can be replaced by a stricter math checker
without touching the rest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from studio.config import THINK_CLOSE, THINK_OPEN

# The demo fine-tune teaches a final answer in \boxed{…}: a closed one counts (an unclosed `\boxed{` is no
# answer); the group is what it holds.
DEMO_PATTERN = r"\\boxed\{(.+)\}"

# Any reasoning tag, whole or broken (`</think` cut before its `>`, `<THINK >`): none belongs in an answer.
_ANY_TAG = re.compile(r"</?\s*think\b[^>]*>?", re.IGNORECASE)
_BOXED = "\\boxed{"
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


@dataclass(frozen=True)
class FormatCheck:
    """Whether a reply keeps R1's shape: reasoning closed once by `</think>`, then a non-empty answer with no
    reasoning tag in it. `problem` says in words what is wrong (None when nothing is)."""

    ok: bool
    problem: str | None = None


def check_format(text: str) -> FormatCheck:
    """Judge generated text, which starts inside the reasoning (the prompt ends with `<think>`); a reply that
    opens the reasoning itself (templates that do not) may start with one `<think>`."""
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN):]
    end = body.find(THINK_CLOSE)
    if end < 0:
        return FormatCheck(False, "the reasoning is never closed with </think>")
    reasoning, answer = body[:end], body[end + len(THINK_CLOSE):]
    if _ANY_TAG.search(reasoning):
        return FormatCheck(False, "a second <think> tag inside the reasoning")
    stray = _ANY_TAG.search(answer)
    if stray:
        return FormatCheck(False, f"a stray {stray.group(0).strip()} tag in the answer after </think>")
    if not answer.strip():
        return FormatCheck(False, "no answer after </think>")
    return FormatCheck(True)


def last_boxed(text: str) -> str | None:
    """The contents of the last complete `\\boxed{…}` (braces balanced inside it); an unclosed one is no answer."""
    found = None
    start = text.find(_BOXED)
    while start >= 0:
        depth, position = 1, start + len(_BOXED)
        while position < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            position += 1
        if depth == 0:
            found = text[start + len(_BOXED):position - 1]
        start = text.find(_BOXED, start + 1)
    return found


def extract_answer(answer: str, pattern: re.Pattern | None = None) -> str | None:
    """The final answer in a reply's answer part: the last complete `\\boxed{…}`, else the last match of the
    answer pattern (its first group when it has one, else the whole match); None when neither is there."""
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed.strip()
    if pattern is not None:
        matches = list(pattern.finditer(answer))
        if matches:
            match = matches[-1]
            return (match.group(1) if pattern.groups else match.group(0)).strip()
    return None


def normalize(answer: str) -> str:
    """An answer as it is compared: no surrounding space or `$`, `\\text{…}` unwrapped, no trailing period, no
    thousands separators, spaces collapsed."""
    text = answer.strip()
    previous = None
    while previous != text:  # `\text{\textbf{18}}` unwraps in two passes
        previous, text = text, _TEXT_COMMAND.sub(r"\1", text)
    text = text.replace("$", "").replace("\\!", "").replace("\\,", "").strip()
    text = text.rstrip(".").strip()
    text = _THOUSANDS.sub("", text)
    return " ".join(text.split())


def _as_number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def same_answer(extracted: str, reference: str) -> bool:
    """Whether an extracted answer equals the reference: both normalized, numbers compared as numbers ("18.0"
    equals "18"), anything else as case-folded text. The one comparison batch compare makes."""
    answer, wanted = normalize(extracted), normalize(reference)
    answer_number, wanted_number = _as_number(answer), _as_number(wanted)
    if answer_number is not None and wanted_number is not None:
        return math.isclose(answer_number, wanted_number, rel_tol=1e-9, abs_tol=1e-12)
    return answer.casefold() == wanted.casefold()


@dataclass(frozen=True)
class AnswerCheck:
    """The answer taken out of a reply (None: none found) and whether it equals the reference (None: no
    reference to compare with)."""

    extracted: str | None
    matches: bool | None


def check_answer(answer: str, reference: str | None, pattern: re.Pattern | None = None) -> AnswerCheck:
    extracted = extract_answer(answer, pattern)
    if reference is None:
        return AnswerCheck(extracted, None)
    return AnswerCheck(extracted, extracted is not None and same_answer(extracted, reference))


def compile_pattern(pattern: str | None) -> re.Pattern | None:
    """The answer pattern as a regular expression; a ValueError that quotes it as typed when it is not one."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"The answer pattern “{pattern}” is not a valid regular expression ({error}). Fix it in "
                         "Batch compare's Answer pattern box (a backslash before { } ( ) [ ] . + * ? makes it a "
                         "plain character), or empty the box to count no pattern.") from None


def describe_pattern(pattern: str | None) -> str:
    """What an answer pattern counts, in words, for the table's legend, the summary and the report."""
    if not pattern:
        return "no answer pattern"
    if pattern in (DEMO_PATTERN, r"\\boxed\{"):
        return "the final answer written inside `\\boxed{…}`"
    compiled = compile_pattern(pattern)
    if compiled.groups:
        return f"text matching the regular expression `{pattern}` (the part in its first ( ) is the answer)"
    return f"text matching the regular expression `{pattern}`"


# What each judgement measures, in words: the compare table's legend, the summary and the report share these.
# Code is in backticks: the Chat tab shows these as Markdown, the report as <code>.
FORMAT_MEANS = ("keeps R1 format: the reasoning closed once with `</think>`, then a non-empty answer with no "
                "`<think>` or `</think>` tag in it")
MATCH_MEANS = ("matches reference: the answer's last complete `\\boxed{…}` (else the answer pattern's match) "
               "equals the reference once spaces, `$`, `\\text{}`, a final period and thousands separators are set "
               "aside; numbers compared as numbers (18.0 = 18)")
