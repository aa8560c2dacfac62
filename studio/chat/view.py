"""What the Chat tab shows and sends, with no gradio: chat histories, pane stats, compare tables."""

from __future__ import annotations

import pandas as pd

from studio.chat.generate import Reply, history_without_reasoning

COMPARE_COLUMNS = ["prompt", "reference", "base answer", "LoRA answer", "base reasoning tokens",
                   "LoRA reasoning tokens", "base format", "LoRA format", "base matches", "LoRA matches"]


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
    shape = "" if not reply.finished or reply.well_formed else " · ⚠ no answer after the reasoning"
    if reply.finished and reply.cut_in_reasoning:
        shape = " · ⚠ cut inside the reasoning: the token budget ran out (raise Max new tokens)"
    return (f"reasoning {reasoning:,} tokens · answer {answer:,} tokens · "
            f"{reply.tokens_per_s:,.1f} tokens/s{state}{shape}")


def compare_frame(result_json: dict) -> pd.DataFrame:
    def mark(value):
        return "" if value is None else ("✔" if value else "✘")

    def form(reply):  # a reply the budget cut inside its reasoning is not a format failure of the model
        return "✘ cut in reasoning" if reply.get("cut_in_reasoning") else mark(reply["well_formed"])

    def answer(reply):
        return "(cut inside the reasoning: no answer yet)" if reply.get("cut_in_reasoning") else reply["answer"]

    rows = [[row["prompt"], row.get("reference") or "", answer(row["base"]), answer(row["lora"]),
             row["base"]["reasoning_tokens"], row["lora"]["reasoning_tokens"], form(row["base"]),
             form(row["lora"]), mark(row["base"]["matches_reference"]),
             mark(row["lora"]["matches_reference"])] for row in result_json["rows"]]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def compare_summary_markdown(result_json: dict) -> str:
    summary = result_json["summary"]
    pattern = result_json.get("pattern")
    lines = [f"**{summary['prompts']} prompts**", "",
             "| | keeps R1 format | matches reference | " + (f"answer pattern `{pattern}` |" if pattern else "|"),
             "|---|---|---|" + ("---|" if pattern else "")]
    for side in ("base", "lora"):
        s = summary.get(side)
        if not s:
            continue
        match = "—" if s["answer_match"] is None else f"{s['answer_match']}%"
        cells = f"| **{side.upper()}** | {s['format_compliance']}% | {match} |"
        if pattern:
            cells += f" {s['pattern']}% |"
        lines.append(cells)
    cut = {side: (summary.get(side) or {}).get("cut_in_reasoning", 0) for side in ("base", "lora")}
    if any(cut.values()):
        lines += ["", f"⚠ {cut['base']} base and {cut['lora']} LoRA replies were cut inside the reasoning by the "
                      f"token budget ({result_json.get('settings', {}).get('max_new_tokens')} new tokens): they count "
                      "as not keeping the format; raise Max new tokens (R1 reasons for thousands of tokens)."]
    return "\n".join(lines)
