"""Batch compare: many prompts through base and LoRA, a table per prompt and a summary.

Per answer (judged by studio.chat.scoring): reasoning length, whether it keeps R1's shape (reasoning closed once
by `</think>`, then an answer with no reasoning tag in it), the answer taken out of it and whether that equals
the reference, and — when an answer pattern is given — whether it shows the taught form (for the demo: the final
answer in `\\boxed{}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from studio.chat import scoring
from studio.chat.generate import BASE, LORA, ChatEngine, Reply, SamplingSettings
from studio.chat.scoring import DEMO_PATTERN  # noqa: F401  (the Chat tab's default pattern)


@dataclass
class Prompt:
    text: str
    reference: str | None = None


def read_prompts(path: str | Path) -> list[Prompt]:
    """Rows with `prompt` (or `query`/`question`/`instruction`) and an optional `reference`, from any file the
    Data tab reads (studio.data.readers: JSONL, JSON, CSV, Parquet); a .txt file holds one prompt per line."""
    from studio.data.readers import DatasetUnreadable, read_raw_rows

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() == ".txt":
        return [Prompt(line.strip()) for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    try:
        _, rows = read_raw_rows(str(path))
    except DatasetUnreadable as error:
        raise ValueError(str(error)) from None
    prompts = []
    for number, row, error in rows:
        where = f"{path.name}, row {number}"
        if error:
            raise ValueError(f"{where}: {error}")
        if isinstance(row, str):
            prompts.append(Prompt(row))
            continue
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a prompt is a string or an object with a `prompt` field, not "
                             f"{type(row).__name__} ({str(row)[:40]})")
        text = next((row.get(key) for key in ("prompt", "query", "question", "instruction") if row.get(key)), None)
        if not text:
            raise ValueError(f"{where}: no `prompt` (or query/question/instruction) field")
        reference = row.get("reference", row.get("answer"))
        prompts.append(Prompt(str(text), None if reference is None else str(reference)))
    if not prompts:
        raise ValueError(f"{path.name}: no prompts in it")
    return prompts


@dataclass
class CompareRow:
    prompt: Prompt
    replies: dict[str, Reply]

    def to_json(self, pattern: re.Pattern | None) -> dict:
        out = {"prompt": self.prompt.text, "reference": self.prompt.reference}
        for side, reply in self.replies.items():
            shape = scoring.check_format(reply.text)
            answer = scoring.check_answer(reply.answer, self.prompt.reference, pattern)
            out[side] = {**reply.to_json(),
                         "well_formed": shape.ok, "format_problem": shape.problem,
                         "extracted_answer": answer.extracted, "matches_reference": answer.matches,
                         "shows_pattern": bool(pattern.search(reply.answer)) if pattern else None}
        return out


@dataclass
class CompareResult:
    rows: list[CompareRow]
    pattern: str | None = None
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        pattern = scoring.compile_pattern(self.pattern)
        return [row.to_json(pattern) for row in self.rows]

    def summary(self) -> dict:
        table = self.table()
        measures = {"format_compliance": scoring.FORMAT_MEANS, "answer_match": scoring.MATCH_MEANS}
        if self.pattern:
            measures["pattern"] = f"shows the answer pattern: {scoring.describe_pattern(self.pattern)}"
        summary = {"prompts": len(table), "measures": measures}  # what each percentage counts, in words
        for side in (BASE, LORA):
            answers = [row[side] for row in table if side in row]
            if not answers:
                continue
            matched = [a["matches_reference"] for a in answers if a["matches_reference"] is not None]
            shown = [a["shows_pattern"] for a in answers if a["shows_pattern"] is not None]
            summary[side] = {
                "format_compliance": _percent(sum(a["well_formed"] for a in answers), len(answers)),
                "answer_match": _percent(sum(matched), len(matched)) if matched else None,
                "pattern": _percent(sum(shown), len(shown)) if shown else None,
                "mean_reasoning_tokens": round(sum(a["reasoning_tokens"] for a in answers) / len(answers), 1),
                "cut_in_reasoning": sum(a.get("cut_in_reasoning", False) for a in answers),
            }
        return summary

    def to_json(self) -> dict:
        return {"pattern": self.pattern, "settings": self.settings, "summary": self.summary(), "rows": self.table()}


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def default_batch_size() -> int:
    """Prompts a batch: 64 (128 rows, the widest compiled step) on a GPU with room for their cache, else 16."""
    import torch

    if torch.cuda.is_available() and torch.cuda.get_device_properties(0).total_memory >= 60 * 2**30:
        return 64
    return 16


def run_compare(engine: ChatEngine, prompts: list[Prompt], settings: SamplingSettings, *,
                pattern: str | None = None, batch_size: int | None = None,
                progress: Callable[[float, str], None] | None = None) -> CompareResult:
    """Every prompt through base and LoRA (one batch of base and LoRA rows per prompt group)."""
    batch_size = batch_size or default_batch_size()
    scoring.compile_pattern(pattern)  # a bad pattern is said before any prompt is answered
    rows: list[CompareRow] = []
    for start in range(0, len(prompts), batch_size):
        if progress:
            progress(start / len(prompts), f"Prompts {start + 1}–{min(start + batch_size, len(prompts))} of {len(prompts)}")
        group = prompts[start:start + batch_size]
        conversations = [[{"role": "user", "content": prompt.text}] for prompt in group]
        if progress:  # a new batch size's decode step is compiled once a process (a minute or two on a GPU)
            engine.prepare_many(conversations, settings, on_compile=lambda rows: progress(
                start / len(prompts), f"Compiling the decode step for batches of {rows} rows (once; a minute "
                                      "or two)"))
        for prompt, replies in zip(group, engine.answer_many(conversations, settings)):
            rows.append(CompareRow(prompt, replies))
    return CompareResult(rows, pattern, {"temperature": settings.temperature, "top_p": settings.top_p,
                                         "max_new_tokens": settings.max_new_tokens, "seed": settings.seed})
