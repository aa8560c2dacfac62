"""What the Chat tab shows and sends, with no gradio: chat histories, pane stats, compare tables."""

from __future__ import annotations

import pandas as pd

from studio.chat import scoring
from studio.chat.generate import Reply, history_without_reasoning
from studio.chat.math_text import with_boxed_in_math, without_boxed_in_math

COMPARE_COLUMNS = ["prompt", "reference", "base answer", "LoRA answer", "base reasoning tokens",
                   "LoRA reasoning tokens", "base format", "LoRA format", "base matches", "LoRA matches"]
# Columns that may hold math render as markdown, where the table's KaTeX draws it; counts stay numbers, and the
# format columns plain text (they name tags like </think>).
COMPARE_DATATYPES = ["markdown"] * 4 + ["number"] * 2 + ["str"] * 2 + ["markdown"] * 2
NO_COMPARE_YET = ("No batch compare yet: the report will hold the training side only. Run **Batch compare** "
                  "above first (a minute on the demo) to add what the fine-tune changed: base and LoRA answers "
                  "to the same prompts, side by side.")


def compare_legend(pattern: str | None) -> str:
    """What each column of the compare table measures, in words (shown under the table and in the report)."""
    lines = [f"- **format** — {scoring.FORMAT_MEANS}; ✘ says what broke it.",
             f"- **matches** — {scoring.MATCH_MEANS}; ✔ or ✘ shows the answer taken, or that none was found.",
             "- **reasoning tokens** — tokens before `</think>`."]
    if pattern:
        lines.append(f"- **answer pattern** (summary) — {scoring.describe_pattern(pattern)}.")
    return "\n".join(lines)


def pane_text(reply: Reply) -> str:
    """A reply as its chat pane shows it: a bare \\boxed{…} put in math delimiters so the pane draws the box."""
    return with_boxed_in_math(reply.display())


def format_cell(reply: dict) -> str:
    """A reply's format judgement in words (a reply cut in its reasoning by the budget is not the model's fault)."""
    if reply.get("cut_in_reasoning"):
        return "✘ cut in reasoning"
    if reply["well_formed"]:
        return "✔"
    return f"✘ {reply.get('format_problem') or 'no answer after the reasoning'}"


def match_cell(reply: dict) -> str:
    """Whether the answer taken out of a reply equals the reference, with that answer (or its absence)."""
    matches = reply.get("matches_reference")
    if matches is None:
        return "— no reference"
    taken = reply.get("extracted_answer")
    if taken is None:
        return "✘ no answer found"
    if any(mark in taken for mark in "\\^_{}"):  # LaTeX: between $…$ so that the table and the report draw it
        taken = f"${taken}$"
    return f"{'✔' if matches else '✘'} {taken}"


def message_text(content) -> str:
    """A chatbot message's content as text (gradio hands inputs back as a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in content)
    if isinstance(content, dict):
        return content.get("text", "")
    return "" if content is None else str(content)


def conversation_from_history(history: list[dict] | None, prompt: str) -> list[dict]:
    """The turns to send: earlier replies without their reasoning (as R1 expects), then the new prompt.

    The chat pane hands a reply back split in two: the folded reasoning (a message with a metadata title)
    and the answer. R1 wants earlier answers only, so the reasoning messages are left out here.
    """
    turns: list[dict] = []
    for message in history or []:
        role = message.get("role")
        if role not in ("user", "assistant") or (message.get("metadata") or {}).get("title"):
            continue
        text = message_text(message.get("content"))
        if role == "assistant":  # the pane's $…$ around \boxed{…} is for display only
            text = without_boxed_in_math(text)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += text
        else:
            turns.append({"role": role, "content": text})
    return history_without_reasoning(turns) + [{"role": "user", "content": prompt}]


def pane_stats(reply: Reply | None) -> str:
    if reply is None or not reply.tokens:
        return ""
    reasoning = reply.reasoning_tokens if reply.reasoning_tokens is not None else reply.tokens
    answer = reply.tokens - reasoning
    state = "" if reply.finished else " · writing…"
    shape = ""
    if reply.finished:
        check = scoring.check_format(reply.text)
        shape = "" if check.ok else f" · ⚠ {check.problem.replace('<', '&lt;')}"  # Markdown: a tag is not HTML
    if reply.finished and reply.cut_in_reasoning:
        shape = " · ⚠ cut inside the reasoning: the token budget ran out (raise Max new tokens)"
    return (f"reasoning {reasoning:,} tokens · answer {answer:,} tokens · "
            f"{reply.tokens_per_s:,.1f} tokens/s{state}{shape}")


def answer_shown(reply: dict) -> str:
    """A reply's answer part for the table and the report, or why there is none."""
    if reply.get("cut_in_reasoning"):
        return "(cut inside the reasoning: no answer yet)"
    return reply["answer"] or "(no answer)"


def compare_frame(result_json: dict) -> pd.DataFrame:
    def answer(reply):
        return with_boxed_in_math(answer_shown(reply))

    rows = [[with_boxed_in_math(row["prompt"]), row.get("reference") or "", answer(row["base"]),
             answer(row["lora"]), row["base"]["reasoning_tokens"], row["lora"]["reasoning_tokens"],
             format_cell(row["base"]), format_cell(row["lora"]), match_cell(row["base"]),
             match_cell(row["lora"])] for row in result_json["rows"]]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def compare_summary_markdown(result_json: dict) -> str:
    summary = result_json["summary"]
    pattern = result_json.get("pattern")
    header = "| | keeps R1 format | matches reference |" + (" shows the answer pattern |" if pattern else "")
    lines = [f"**{summary['prompts']} prompts**, each answered by the base model and by base + LoRA.", "",
             header, "|---|---|---|" + ("---|" if pattern else "")]
    for side in ("base", "lora"):
        s = summary.get(side)
        if not s:
            continue
        match = "— (no references)" if s["answer_match"] is None else f"{s['answer_match']}%"
        cells = f"| **{side.upper()}** | {s['format_compliance']}% | {match} |"
        if pattern:
            cells += f" {s['pattern']}% |"
        lines.append(cells)
    lines += ["", compare_legend(pattern)]
    cut = {side: (summary.get(side) or {}).get("cut_in_reasoning", 0) for side in ("base", "lora")}
    if any(cut.values()):
        lines += ["", f"⚠ {cut['base']} base and {cut['lora']} LoRA replies were cut inside the reasoning by the "
                      f"token budget ({result_json.get('settings', {}).get('max_new_tokens')} new tokens): they count "
                      "as not keeping the format; raise Max new tokens (R1 reasons for thousands of tokens)."]
    return "\n".join(lines)
