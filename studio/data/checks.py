"""Per-row checks of R1 reasoning data -> a report with stable issue codes; fixes; export.

The codes are a contract (CLI JSON, UI, tests): add new ones, never rename. Each code has a severity
(errors drop the row from training, warnings do not) and a one-line reason it matters for R1.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from studio.config import (
    DEFAULT_MAX_LENGTH, FOREIGN_THINK_TAGS, LENGTH_BATCH_CHARS, MAX_ROW_CHARS, SOLUTION_MARKERS, THINK_CLOSE,
    THINK_OPEN,
)
from studio.data.record_store import RecordStore
from studio.data.records import Dataset, Record, paused_gc

ERROR, WARNING = "error", "warning"
# Where max_length cuts a row that is over it.
CUT_IN_PROMPT, CUT_IN_REASONING, CUT_IN_ANSWER = 0, 1, 2


@dataclass(frozen=True)
class CodeInfo:
    severity: str
    why: str  # why it matters for an R1 fine-tune, one line for the UI


CODES: dict[str, CodeInfo] = {
    "parse_error": CodeInfo(ERROR, "The row cannot be read, so it cannot be trained on."),
    "unknown_format": CodeInfo(ERROR, "No prompt/reply could be found in the row's fields."),
    "empty_prompt": CodeInfo(ERROR, "A reply to an empty question teaches the model nothing useful."),
    "empty_response": CodeInfo(ERROR, "There is nothing to learn from an empty reply."),
    "missing_think": CodeInfo(ERROR, "Without <think> reasoning the fine-tune unlearns R1's chain of thought."),
    "unclosed_think": CodeInfo(ERROR, "The reasoning never ends, so the model learns to never answer."),
    "nested_think": CodeInfo(ERROR, "<think> inside <think> is not R1's format and confuses the model."),
    "empty_answer": CodeInfo(ERROR, "Reasoning with no answer after </think> teaches the model to stop there."),
    "bad_roles": CodeInfo(ERROR, "Turns must alternate user/assistant and end with the assistant."),
    "missing_field": CodeInfo(ERROR, "A field the mapping names is not in the row, so its text cannot be found."),
    "wrong_type": CodeInfo(ERROR, "A role or text is an object, list or number where text was expected."),
    "text_before_think": CodeInfo(ERROR, "Text before <think> trains the tag inside the reasoning, not at its start."),
    "stray_close_think": CodeInfo(ERROR, "A second </think> is trained into the answer as a literal tag."),
    "tag_in_answer": CodeInfo(ERROR, "A reasoning or solution marker left in the answer is trained as answer text."),
    "unopened_think": CodeInfo(WARNING, "Raw R1 output lacks the opening <think>; repairable by adding it."),
    "multiple_think": CodeInfo(ERROR, "R1 reasons once; later <think> blocks are trained, tags and all, as answer text."),
    "empty_think": CodeInfo(WARNING, "Empty reasoning teaches the model to skip thinking."),
    "think_outside_assistant": CodeInfo(WARNING, "Think tags in a user/system turn are usually pasted by mistake."),
    "foreign_think_tags": CodeInfo(WARNING, "Reasoning in other tags is not seen as reasoning; convertible to <think>."),
    "duplicate": CodeInfo(WARNING, "Repeated rows weigh double and leak between train and eval splits."),
    "truncated": CodeInfo(WARNING, "Training cuts the text at max_length; the cut part is never learned."),
    "row_too_large": CodeInfo(ERROR, "Over the size limit (or past the dataset limit, or unreadable by the "
                                     "tokenizer): not read, so not trained."),
}


@dataclass(slots=True)  # a file of repeated rows has an issue a row: a million of them
class Issue:
    row: int
    code: str
    severity: str
    message: str

    def to_dict(self) -> dict:
        return {"row": self.row, "code": self.code, "severity": self.severity, "message": self.message}


class RowValues(Mapping):
    """Row number -> a count, for the rows measured: two arrays, 16 bytes a row where a dict holds ~100 (a
    million short rows: 100 MB a map). Looked up through a sorted index built when first asked."""

    def __init__(self, items=()):
        self._numbers, self._values = array("q"), array("q")
        self._index = None
        for number, value in dict(items).items():
            self.add(number, value)

    def add(self, number: int, value: int) -> None:
        self._numbers.append(number)
        self._values.append(value)
        self._index = None

    def _sorted(self):
        import numpy as np

        if self._index is None:
            numbers = np.frombuffer(self._numbers, dtype=np.int64) if self._numbers else np.zeros(0, np.int64)
            order = np.argsort(numbers, kind="stable")
            self._index = (numbers[order], order)
        return self._index

    def __getitem__(self, number: int) -> int:
        import numpy as np

        numbers, order = self._sorted()
        at = int(np.searchsorted(numbers, number))
        if at == len(numbers) or numbers[at] != number:
            raise KeyError(number)
        return self._values[int(order[at])]

    def __iter__(self):
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)

    def columns(self) -> tuple[array, array]:
        """(numbers, values) in the order added."""
        return self._numbers, self._values

    def array(self):
        """The values, in the order measured (numpy)."""
        import numpy as np

        return np.frombuffer(self._values, dtype=np.int64) if self._values else np.zeros(0, np.int64)


@dataclass
class LengthStats:
    max_length: int
    lengths: RowValues = field(default_factory=RowValues, repr=False)  # row number -> tokens, rows without errors
    reasoning_tokens: RowValues = field(default_factory=RowValues, repr=False)
    tokenizer: str | None = None  # what measured: the model's tokenizer, named for the report
    exact: bool | None = None  # True: the counts are the model's own; False: an estimate from another vocabulary
    # Row number -> where max_length cuts it (CUT_IN_PROMPT, CUT_IN_REASONING or CUT_IN_ANSWER), rows over it only.
    cuts: RowValues = field(default_factory=RowValues, repr=False)

    def cut_before_answer(self) -> set[int]:
        """The rows max_length cuts inside the prompt or the reasoning: training never sees their answer."""
        numbers, places = self.cuts.columns()
        return {number for number, place in zip(numbers, places) if place != CUT_IN_ANSWER}

    def summary(self, bins: int = 20) -> dict:
        import numpy as np

        values = np.sort(self.lengths.array())
        measured_by = {"tokenizer": self.tokenizer, "exact": self.exact}
        if not len(values):
            return {"count": 0, "max_length": self.max_length, **measured_by}

        def percentile(fraction: float) -> int:
            return int(values[min(len(values) - 1, int(fraction * len(values)))])

        top = max(int(values[-1]), self.max_length)
        width = max(1, -(-top // bins))
        edges = [width * index for index in range(bins + 1)]
        at = np.searchsorted(values, edges, side="left").tolist()
        counts = [at[i + 1] - at[i] for i in range(bins)]
        counts[-1] += len(values) - at[-1]
        return {
            "count": len(values), "max_length": self.max_length,
            "min": int(values[0]), "mean": round(float(values.sum()) / len(values), 1),
            "p50": percentile(0.5), "p90": percentile(0.9), "p95": percentile(0.95), "p99": percentile(0.99),
            "max": int(values[-1]),
            "over_max_length": len(values) - int(np.searchsorted(values, self.max_length, side="right")),
            "cut_before_answer": len(self.cut_before_answer()),
            "histogram": {"edges": edges, "counts": counts}, **measured_by,
        }


@dataclass
class Report:
    dataset: Dataset
    issues: list[Issue]
    lengths: LengthStats | None = None
    length_model: str | None = None  # the model whose tokenizer measured `lengths`; fixes measure with it again
    # The report this one is a view of (studio.data.check_cache: one check shared by sessions), kept alive by it.
    origin: "Report | None" = field(default=None, repr=False, compare=False)
    prepared: bool = False  # the measured ids are in the prepared-tokens cache (studio.data.prepared)
    # Each repeated row's number -> the number of the row it repeats (the first with the same messages), in order.
    duplicates: RowValues = field(default_factory=RowValues, repr=False)

    @property
    def rows(self) -> int:
        return len(self.dataset.records)

    @property
    def error_rows(self) -> set[int]:
        return {issue.row for issue in self.issues if issue.severity == ERROR}

    @property
    def valid_rows(self) -> int:
        return self.rows - len(self.error_rows)

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(issue.code for issue in self.issues)
        return {code: counts[code] for code in CODES if counts[code]}

    def issues_by_row(self) -> dict[int, list[Issue]]:
        grouped: dict[int, list[Issue]] = {}
        for issue in self.issues:
            grouped.setdefault(issue.row, []).append(issue)
        return grouped

    def to_json(self) -> dict:
        return {
            "path": self.dataset.source,
            "format": self.dataset.format,
            "mapping": self.dataset.mapping.to_json() if self.dataset.mapping else None,
            "alternatives": [mapping.to_json() for mapping in self.dataset.alternatives],
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "summary": self.summary,
            "issues": [issue.to_dict() for issue in self.issues],
            "lengths": self.lengths.summary() if self.lengths else None,
            "prepared": self.prepared,
            # only when the source was larger than the studio reads: what was left unread, and why
            **({"not_read": self.dataset.not_read} if self.dataset.not_read else {}),
        }


# --------------------------------------------------------------------------------------------------
# Row checks

_TAG = re.compile(r"</?think>")
_SOLUTION_TAGS = frozenset(tag for pair in SOLUTION_MARKERS for tag in pair)


def _alternatives(tags) -> str:
    return "|".join(re.escape(tag) for tag in sorted(tags, key=len, reverse=True))


# Every reasoning or solution marker other than <think>/</think>: none may be left in the answer.
_MARKERS = {tag for pair in FOREIGN_THINK_TAGS for tag in pair} | _SOLUTION_TAGS
_ANSWER_MARKER = re.compile(_alternatives(_MARKERS))
# The fast path only searches an answer holding one of these characters (every marker starts with one).
assert all(tag[0] in "<[◁" for tag in _MARKERS), "a new marker needs its first character in _clean_single_turn"
_SOLUTION_OPEN = re.compile(r"[ \t]*(?:%s)\s*" % _alternatives(opening for opening, _ in SOLUTION_MARKERS))
_SOLUTION_CLOSE = re.compile(r"\s*(?:%s)[ \t]*" % _alternatives(closing for _, closing in SOLUTION_MARKERS))
# The fix names as messages quote them; a message names a fix only where that fix changes the row.
CONVERT_HINT = "the 'convert foreign tags' fix"
REPAIR_HINT = "the 'repair <think>' fix"


def _foreign_pair(reply: str) -> tuple[str, str] | None:
    """The foreign reasoning pair whose marker comes first in the reply."""
    best, best_at = None, len(reply)
    for pair in FOREIGN_THINK_TAGS:
        for tag in pair:
            at = reply.find(tag, 0, best_at)
            if at >= 0:
                best, best_at = pair, at
    return best


def _convert_foreign(reply: str) -> str:
    """'convert foreign tags': foreign reasoning tags -> <think>…</think> in a reply with no think tag,
    then the solution markers out of the answer (what they wrap stays the answer)."""
    if THINK_OPEN not in reply and THINK_CLOSE not in reply:
        pair = _foreign_pair(reply)
        if pair:
            reply = reply.replace(pair[0], THINK_OPEN).replace(pair[1], THINK_CLOSE)
    close = reply.find(THINK_CLOSE)
    if close >= 0:
        start = close + len(THINK_CLOSE)
        answer = reply[start:]
        if any(tag in answer for tag in _SOLUTION_TAGS):
            reply = reply[:start] + _SOLUTION_CLOSE.sub("", _SOLUTION_OPEN.sub("", answer))
    return reply


def _check_reply(reply: str, where: str) -> list[tuple[str, str]]:
    """Think-tag checks of the final assistant reply."""
    if _TAG.search(reply):
        return _check_think_tags(reply, where)
    pair = _foreign_pair(reply)
    if pair is None:
        return [("missing_think",
                 f"{where}: the assistant reply has no <think>…</think> reasoning; add the chain of thought "
                 "or drop the row")]
    opening, closing = pair
    converted = _convert_foreign(reply)
    removed = sum(map(reply.count, _SOLUTION_TAGS)) > sum(map(converted.count, _SOLUTION_TAGS))
    solution = " (it also removes the solution markers from the answer)" if removed else ""
    # Training converts the row the same way, so what is wrong with the converted reply is checked here too.
    return [("foreign_think_tags",
             f"{where}: the reasoning is in {opening}…{closing} instead of <think>…</think>; "
             f"apply {CONVERT_HINT}{solution}")] + _check_think_tags(
        converted, f"{where}, once {CONVERT_HINT} has turned {opening}…{closing} into <think>…</think>")


def _check_think_tags(reply: str, where: str) -> list[tuple[str, str]]:
    """Checks of a reply that has at least one <think> or </think>."""
    found = []
    tags = list(_TAG.finditer(reply))
    depth = deepest = blocks = strays = 0
    first_stray = reasoning_start = reasoning_end = None  # the first block's reasoning: reply[start:end]
    for match in tags:
        if match.group() == THINK_OPEN:
            depth += 1
            deepest = max(deepest, depth)
            if depth == 1 and reasoning_start is None:
                reasoning_start = match.end()
        elif depth:
            depth -= 1
            if not depth:
                blocks += 1
                if reasoning_end is None:
                    reasoning_end = match.start()
        elif reasoning_end is None:  # the first tag is </think>: raw R1 output, the reasoning starts the reply
            blocks += 1
            reasoning_start, reasoning_end = 0, match.start()
        else:  # a </think> after the reasoning has ended, with nothing open
            strays += 1
            if first_stray is None:
                first_stray = match.start()
    first = tags[0]
    if first.group() == THINK_OPEN:
        before = reply[:first.start()].strip()
        if before:
            shown = before if len(before) <= 40 else before[:37] + "..."
            found.append(("text_before_think",
                          f"{where}: {shown!r} comes before <think>; training would keep that <think> inside "
                          "the reasoning as a literal tag — start the reply with <think> (move the text into "
                          "the reasoning or the answer, or delete it)"))
    if deepest > 1:
        found.append(("nested_think", f"{where}: <think> opens again inside an open <think>; "
                                      "keep one flat <think>…</think> block"))
    if reasoning_end is None:
        found.append(("unclosed_think", f"{where}: <think> is opened {depth} more time(s) than closed; "
                                        "add </think> where the reasoning ends, or drop the row"))
        return found
    if first.group() == THINK_CLOSE:
        found.append(("unopened_think", f"{where}: </think> appears without an opening <think>; "
                                        f"apply {REPAIR_HINT} to add it at the start"))
    if blocks > 1:
        found.append(("multiple_think", f"{where}: {blocks} <think>…</think> blocks; R1 reasons once, and "
                                        "training would keep the blocks after the first, tags and all, as "
                                        "answer text — merge them into one <think>…</think> or drop the row"))
    if strays:
        extra = "a second </think> comes" if strays == 1 else f"{strays} more </think> come"
        after = reply[max(0, first_stray - 30):first_stray]
        found.append(("stray_close_think",
                      f"{where}: {extra} after the one that ends the reasoning (the first right after "
                      f"{'…' if first_stray > 30 else ''}{after!r}); training would keep it in the answer as "
                      "a literal tag — remove the extra </think> or drop the row"))
    if not reply[reasoning_start:reasoning_end].strip():
        found.append(("empty_think", f"{where}: the <think>…</think> block is empty; add the reasoning "
                                     "or drop the row"))
    answer = reply[reply.find(THINK_CLOSE) + len(THINK_CLOSE):]  # what training keeps as the answer
    if not _TAG.sub("", answer).strip():
        found.append(("empty_answer", f"{where}: nothing follows </think>; add the final answer after "
                                      "the reasoning or drop the row"))
    left = list(dict.fromkeys(match.group() for match in _ANSWER_MARKER.finditer(answer)))
    if depth:  # a <think> opened after the reasoning and never closed
        left.insert(0, THINK_OPEN)
    if left:
        solutions = [tag for tag in left if tag in _SOLUTION_TAGS]
        others = [tag for tag in left if tag not in _SOLUTION_TAGS]
        if not others:
            hint = f"apply {CONVERT_HINT} to remove the solution markers and keep what they wrap as the answer"
        elif solutions:
            hint = (f"remove {', '.join(others)} from the answer and apply {CONVERT_HINT} for the solution "
                    "markers, or drop the row")
        else:
            hint = f"remove {'it' if len(left) == 1 else 'them'} from the answer or drop the row"
        found.append(("tag_in_answer",
                      f"{where}: the answer after </think> still holds {', '.join(left)}; training would "
                      f"teach the model to write {'it' if len(left) == 1 else 'them'} in its answers — {hint}"))
    return found


def _check_roles(messages: list[tuple[str, str]], label: str) -> str | None:
    roles = [role for role, _ in messages]
    unknown = sorted({role for role in roles if role not in ("system", "user", "assistant")})
    if unknown:
        return f"{label}: unknown role(s) {', '.join(map(repr, unknown))}; use system, user or assistant"
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        return f"{label}: a system turn may only come first (turn {body.index('system') + 1 + len(roles) - len(body)})"
    if not body:
        return f"{label}: no user or assistant turn"
    for index, role in enumerate(body):
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            turn = index + 1 + len(roles) - len(body)
            return f"{label}: turn {turn} is {role!r} where {expected!r} was expected; turns must alternate user/assistant"
    if body[-1] != "assistant":
        return f"{label}: the conversation ends with the user; it must end with the assistant's reply"
    return None


def _clean_single_turn(messages: list[tuple[str, str]]) -> bool:
    """Fast path for the common row: one user turn, one reply that starts with one well-formed think block
    and has no other reasoning or solution marker in its answer."""
    if len(messages) != 2:
        return False
    (first_role, prompt), (second_role, reply) = messages
    if first_role != "user" or second_role != "assistant" or reply.count("think>") != 2:
        return False
    opened, closed = reply.find("<think>"), reply.find("</think>")
    # count == 2 and both found means exactly one of each tag; only whitespace may come before <think>
    if not (0 <= opened < closed and (not opened or reply[:opened].isspace())
            and prompt and not prompt.isspace() and "think>" not in prompt
            and opened + 7 != closed and not reply[opened + 7:closed].isspace()):
        return False
    answer = reply[closed + 8:]
    return bool(answer and not answer.isspace()
                and not (("<" in answer or "[" in answer or "◁" in answer) and _ANSWER_MARKER.search(answer)))


def check_record(record: Record, label: str) -> list[tuple[str, str]]:
    """(code, message) pairs for one record; empty when the row is clean."""
    where = f"{label} {record.number}"
    if record.problem:
        return [record.problem]
    messages = record.messages
    if _clean_single_turn(messages):
        return []
    found = []
    roles_problem = _check_roles(messages, where)
    if roles_problem:
        found.append(("bad_roles", roles_problem))
    for turn, (role, content) in enumerate(messages, 1):
        if role in ("user", "system") and (THINK_OPEN in content or THINK_CLOSE in content):
            found.append(("think_outside_assistant",
                          f"{where}, turn {turn} ({role}): contains think tags; reasoning belongs in the "
                          "assistant reply — remove the tags from this turn"))
    users = [content for role, content in messages if role == "user"]
    if any(not content.strip() for content in users) or not users:
        found.append(("empty_prompt", f"{where}: the user prompt is empty; write the question or drop the row"))
    replies = [content for role, content in messages if role == "assistant"]
    if replies and messages[-1][0] == "assistant":
        reply = replies[-1]
        if not reply.strip():
            found.append(("empty_response", f"{where}: the assistant reply is empty; write it or drop the row"))
        else:
            found.extend(_check_reply(reply, f"{where}, assistant reply"))
    elif not replies and not roles_problem:
        found.append(("empty_response", f"{where}: there is no assistant reply to train on"))
    return found


def check_dataset(
    dataset: Dataset,
    *,
    tokenizer=None,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: Callable[[float, str], None] | None = None,
    keep=None,
    checked: "RowChecker | None" = None,
) -> Report:
    """Check every row; with a tokenizer also measure lengths and flag truncation (and hand the token ids of
    each measured row to `keep`, see measure_lengths). `checked`: a RowChecker that has seen every row already
    (load_dataset's on_records: the rows were checked as they were read)."""
    with paused_gc():
        if checked is None:
            checked = RowChecker(progress if tokenizer is None else None, total=len(dataset.records))
            label = dataset.row_label()
            for block in blocks_of(dataset.records):
                checked(block, label)
        report = checked.report(dataset)
    if tokenizer is not None:
        with paused_gc():  # ids and rows hold no cycles; full collections would rescan every row kept, per batch
            report.lengths = measure_lengths(report, tokenizer, max_length, progress, keep=keep)
    report.issues.sort(key=lambda issue: issue.row)  # stable: per-row order of codes is kept
    return report


def blocks_of(records, rows: int = 4096, chars: int = 4 << 20):
    """Records in lists of at most `rows` rows and about `chars` characters (long R1 rows: a fixed count of them
    could hold hundreds of megabytes at once); the last list may be empty."""
    block, held = [], 0
    for record in records:
        block.append(record)
        held += sum(len(content) for _, content in record.messages)
        if len(block) >= rows or held >= chars:
            yield block
            block, held = [], 0
    yield block


class RowChecker:
    """The row checks, fed a block of records at a time (`checker(records, label)`): keeps the issues found and,
    for the duplicate check, three numbers a row — never the rows themselves.

    Repeated rows are found by each row's messages' hash (Python's 64-bit keyed SipHash over the text) and the
    length of the last reply: two different rows share both with odds under one in a billion in a file of a
    million rows. Rows are not kept to compare them exactly: that would hold every row's text, or read every
    row twice."""

    def __init__(self, progress: Callable[[float, str], None] | None = None, total: int | None = None):
        self.issues: list[Issue] = []
        self.progress, self.total, self.seen = progress, total, 0
        self._numbers, self._hashes, self._sizes = array("q"), array("q"), array("q")

    def __call__(self, records, label: str, done: float | None = None) -> None:
        add = self.issues.append
        numbers, hashes, sizes = self._numbers.append, self._hashes.append, self._sizes.append
        for record in records:
            messages = record.messages
            if record.problem is not None or not _clean_single_turn(messages):
                for code, message in check_record(record, label):
                    add(Issue(record.number, code, CODES[code].severity, message))
            if record.problem is None:
                numbers(record.number)
                hashes(hash(tuple(messages)))
                sizes(len(messages[-1][1]) if messages else -1)
        self.seen += len(records)
        if self.progress:
            if done is None and self.total:
                done = self.seen / self.total
            self.progress(done or 0.0, f"Checking rows ({self.seen:,} read)")

    def report(self, dataset: Dataset) -> Report:
        report = Report(dataset, self.issues)
        label = dataset.row_label()
        for number, first in self._repeats():
            report.duplicates.add(number, first)
            self.issues.append(Issue(number, "duplicate", WARNING,
                                     f"{label} {number}: same prompt and reply as {label} {first}; "
                                     "apply 'drop duplicates' to keep the first"))
        return report

    def _repeats(self):
        """(number, first number) of every row whose messages an earlier row has, in file order."""
        import numpy as np

        if len(self._numbers) < 2:
            return []
        numbers = np.frombuffer(self._numbers, dtype=np.int64)
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        sizes = np.frombuffer(self._sizes, dtype=np.int64)
        order = np.lexsort((numbers, sizes, hashes))  # by hash, then size, then position in the file
        hashes, sizes = hashes[order], sizes[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (hashes[1:] != hashes[:-1]) | (sizes[1:] != sizes[:-1])
        if starts.all():
            return []
        firsts = numbers[order][np.flatnonzero(starts)][np.cumsum(starts) - 1]  # each row's group's first
        repeated = ~starts
        copies, of = numbers[order][repeated], firsts[repeated]
        in_order = np.argsort(copies, kind="stable")
        return zip(copies[in_order].tolist(), of[in_order].tolist())


# --------------------------------------------------------------------------------------------------
# Token lengths


def measure_lengths(report: Report, tokenizer, max_length: int,
                    progress: Callable[[float, str], None] | None = None, batch: int = 1000,
                    batch_chars: int = LENGTH_BATCH_CHARS, keep=None) -> LengthStats:
    """Tokenize the rows that have no error exactly as training will, flag those over max_length.

    `keep` (studio.data.prepared.PreparedWriter) receives each measured row's encoding (`add(number, example)`)
    and each repeated row's first (`alias(number, first)`): the same pass prepares the training's tokens.

    Batches hold at most `batch` rows and `batch_chars` characters (a fixed count of long rows would hold tens of
    millions of token ids at once). A row over MAX_ROW_CHARS is never given to the tokenizer (`row_too_large`);
    rows with the same messages are tokenized once. Whatever the tokenizer raises — BaseExceptions such as the
    PanicException of its Rust core included, KeyboardInterrupt and SystemExit excepted — is caught: the batch
    is measured again row by row, and a row that still fails is a `row_too_large` error naming the failure.
    """
    from studio.data.template import encode_examples

    errors = report.error_rows
    label = report.dataset.row_label()
    stats = LengthStats(max_length)
    # Rows with the same messages measure the same: tokenize the first only (a file of one repeated row costs one).
    # The copies come in file order, as the rows do: walked beside them, never looked up.
    repeats = report.duplicates
    copy_numbers, copy_firsts = repeats.columns()
    firsts = set(copy_firsts)
    first_measure: dict[int, tuple[int, int, int]] = {}  # of the rows that others repeat: total, prompt, reasoning
    failed: dict[int, str] = {}
    total = max(1, len(report.dataset.records) - len(errors) - len(copy_numbers))

    def measured(record: Record, example) -> None:
        if keep is not None:
            keep.add(record.number, example)
        stats.lengths.add(record.number, len(example))
        stats.reasoning_tokens.add(record.number, example.reasoning_end - example.prompt_tokens)
        if record.number in firsts:
            first_measure[record.number] = (len(example), example.prompt_tokens,
                                            example.reasoning_end - example.prompt_tokens)
        _flag_truncated(report, stats, record.number, label, len(example), example.prompt_tokens,
                        example.reasoning_end, max_length)

    def fail(record: Record, message: str) -> None:
        failed[record.number] = message
        report.issues.append(Issue(record.number, "row_too_large", ERROR, f"{label} {record.number}: {message}"))

    chunk: list[Record] = []
    chunk_chars = done = 0

    def flush() -> None:
        nonlocal done
        if progress:
            progress(done / total, "Measuring token lengths")
        conversations = [trainable_messages(record.messages) for record in chunk]
        examples = _encode_guarded(encode_examples, tokenizer, conversations)
        if isinstance(examples, list) and len(examples) == len(chunk):
            for record, example in zip(chunk, examples):
                measured(record, example)
        else:  # the batch failed: find the row(s) that make the tokenizer fail, measure the others
            for record, conversation in zip(chunk, conversations):
                example = _encode_guarded(encode_examples, tokenizer, [conversation])
                if isinstance(example, list) and len(example) == 1:
                    measured(record, example[0])
                else:
                    fail(record, f"the tokenizer failed on this row ({example}), so its length cannot be measured "
                                 "and it cannot be trained; shorten the row or delete it")
        done += len(chunk)
        chunk.clear()

    copies: list[tuple[int, int]] = []
    next_copy = 0
    for record in report.dataset.records:
        if record.number in errors:
            continue
        while next_copy < len(copy_numbers) and copy_numbers[next_copy] < record.number:
            next_copy += 1
        if next_copy < len(copy_numbers) and copy_numbers[next_copy] == record.number:
            copies.append((record.number, copy_firsts[next_copy]))
            continue
        chars = sum(len(content) for _, content in record.messages)
        if chars > MAX_ROW_CHARS:
            fail(record, f"{chars:,} characters, over the limit of {MAX_ROW_CHARS:,} for one row, so it was not "
                         "tokenized; split it into shorter rows or delete it")
            continue
        if chunk and (len(chunk) >= batch or chunk_chars + chars > batch_chars):
            flush()
            chunk_chars = 0
        chunk.append(record)
        chunk_chars += chars
    if chunk:
        flush()
    for number, first in copies:
        if first in failed:
            fail(Record(number), failed[first])
        elif first in first_measure:
            if keep is not None:
                keep.alias(number, first)
            length, prompt, reasoning = first_measure[first]
            stats.lengths.add(number, length)
            stats.reasoning_tokens.add(number, reasoning)
            _flag_truncated(report, stats, number, label, length, prompt, prompt + reasoning, max_length)
    return stats


def _encode_guarded(encode, tokenizer, conversations):
    """encode(tokenizer, conversations), or a one-line description of what it raised. BaseException is caught on
    purpose: the tokenizers library's Rust panics reach Python as pyo3's PanicException, a BaseException."""
    try:
        return encode(tokenizer, conversations)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # noqa: B036 — see the docstring
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _flag_truncated(report: Report, stats: LengthStats, number: int, label: str, total: int, prompt_tokens: int,
                    reasoning_end: int, max_length: int) -> None:
    if total <= max_length:
        return
    if max_length <= prompt_tokens:
        place, where = CUT_IN_PROMPT, "inside the prompt: nothing of the reply would be trained"
    elif max_length < reasoning_end:
        place, where = CUT_IN_REASONING, "inside the reasoning: the rest of it and the whole answer would be lost"
    else:
        place, where = CUT_IN_ANSWER, "inside the answer: its end would be lost"
    stats.cuts.add(number, place)
    report.issues.append(Issue(
        number, "truncated", WARNING,
        f"{label} {number}: {total} tokens, over max_length {max_length}; the cut falls "
        f"{where}. Raise max_length to at least {total} or drop the row"))


# --------------------------------------------------------------------------------------------------
# Fixes and export

FIXES = {
    "convert_foreign": "Convert other reasoning tags (e.g. <|begin_of_thought|>, <thinking>) to <think>…</think> "
                       "and remove solution markers (e.g. <|begin_of_solution|>) from the answer",
    "repair_unopened": "Add the missing opening <think> where only </think> is present",
    "drop_errors": "Drop rows that still have an error",
    "drop_duplicates": "Drop repeated rows, keeping the first",
    "drop_cut_reasoning": "Drop rows that max_length cuts before their answer (inside the reasoning or the prompt): "
                          "training would never see the answer",
    "drop_truncated": "Drop every row longer than max_length (also those cut only inside the answer)",
}
# Fixes that need the token lengths measured.
LENGTH_FIXES = ("drop_cut_reasoning", "drop_truncated")


def repair_reply(reply: str, convert_foreign: bool = True, repair_unopened: bool = True) -> str:
    """The reply with repairable tag problems fixed; unchanged when there is nothing to repair.

    convert_foreign: foreign reasoning tags become <think>…</think> (only in a reply without think tags),
    solution markers leave the answer. repair_unopened: <think> is added before raw R1 output's </think>.
    """
    if convert_foreign:
        reply = _convert_foreign(reply)
    if repair_unopened:
        first_close, first_open = reply.find(THINK_CLOSE), reply.find(THINK_OPEN)
        if first_close >= 0 and (first_open < 0 or first_open > first_close):
            reply = f"{THINK_OPEN}\n{reply.lstrip()}"
    return reply


def trainable_messages(messages: list[tuple[str, str]]) -> list[dict]:
    """Messages as training uses them: dicts, with the last reply's repairable tags repaired."""
    out = [{"role": role, "content": content} for role, content in messages]
    if out and out[-1]["role"] == "assistant":
        out[-1]["content"] = repair_reply(out[-1]["content"])
    return out


@dataclass
class FixResult:
    dataset: Dataset
    report: Report
    changed: Counter  # fix name -> rows affected


def apply_fixes(report: Report, fixes: set[str], *, tokenizer=None,
                max_length: int = DEFAULT_MAX_LENGTH) -> FixResult:
    """Apply the chosen fixes, then check the result again. The input dataset is left untouched."""
    unknown = set(fixes) - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fix(es) {', '.join(sorted(unknown))}; choose from {', '.join(FIXES)}")
    changed: Counter = Counter()
    source = report.dataset
    label = source.row_label()

    def rewritten(records) -> tuple[RecordStore, RowChecker]:
        """The records into a new store, checked on the way (the rows are read once a pass)."""
        store, checker = RecordStore(), RowChecker()
        for block in blocks_of(records):
            checker(block, label)
            store.extend(block)
        return store, checker

    def repaired_records():
        for record in source.records:
            messages = record.messages
            if not record.problem and messages and messages[-1][0] == "assistant":
                reply = messages[-1][1]
                converted = repair_reply(reply, "convert_foreign" in fixes, False)
                repaired = repair_reply(converted, False, "repair_unopened" in fixes)
                changed["convert_foreign"] += converted != reply
                changed["repair_unopened"] += repaired != converted
                if repaired != reply:
                    messages = messages[:-1] + [("assistant", repaired)]
            yield Record(record.number, messages, record.problem, record.extra)

    with paused_gc():
        records, checker = rewritten(repaired_records())
    fixed = Dataset(source.source, source.kind, source.mapping, records, source.alternatives, source.not_read)
    recheck = check_dataset(fixed, tokenizer=tokenizer, max_length=max_length, checked=checker)
    drop: set[int] = set()
    if "drop_errors" in fixes:
        drop |= recheck.error_rows
        changed["drop_errors"] = len(recheck.error_rows)
    for code, fix in (("duplicate", "drop_duplicates"), ("truncated", "drop_truncated")):
        if fix in fixes:
            rows = {issue.row for issue in recheck.issues if issue.code == code} - drop
            drop |= rows
            changed[fix] = len(rows)
    if "drop_cut_reasoning" in fixes and recheck.lengths is not None:
        rows = recheck.lengths.cut_before_answer() - drop
        drop |= rows
        changed["drop_cut_reasoning"] = len(rows)
    if drop:
        with paused_gc():
            kept, checker = rewritten(record for record in records if record.number not in drop)
        fixed = Dataset(source.source, source.kind, source.mapping, kept, source.alternatives, source.not_read)
        recheck = check_dataset(fixed, tokenizer=tokenizer, max_length=max_length, checked=checker)
    return FixResult(fixed, recheck, changed)
