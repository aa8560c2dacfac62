"""What the Chat tab shows, with no server: math the panes and the compare table draw, cells and summary in
words, one-click downloads, the answer pattern explained."""

import gradio as gr

from studio.chat import view
from studio.chat.compare import CompareResult, CompareRow, Prompt
from studio.chat.generate import Reply
from studio.chat.math_text import LATEX_DELIMITERS, with_boxed_in_math
from studio.chat.scoring import DEMO_PATTERN


def reply(text):
    return Reply(text=text, tokens=12, reasoning_tokens=6, finished=True)


def test_a_bare_box_is_put_in_math_for_display_and_taken_out_for_the_history():
    answer = "4 + 5 = 9\n</think>\n\nSo $x = 9$ and \\boxed{\\frac{18}{2}}; \\(a\\) and \\boxed{9"
    shown = view.pane_text(reply(answer))
    assert "$\\boxed{\\frac{18}{2}}$" in shown  # the pane's KaTeX draws only what is between delimiters
    assert "$x = 9$" in shown and "\\(a\\)" in shown  # math already delimited is left as it is
    assert shown.endswith("\\boxed{9")  # an unclosed box is not math
    assert with_boxed_in_math("$\\boxed{1}$") == "$\\boxed{1}$"  # already inside math: not wrapped twice
    history = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "So $\\boxed{9}$."}]
    sent = view.conversation_from_history(history, "Next?")
    assert sent[1]["content"] == "So \\boxed{9}."  # the model gets back what it wrote


def test_the_compare_table_says_in_words_what_failed_and_what_answer_was_taken():
    rows = [CompareRow(Prompt("What is 4 + 5?", "9"), {"base": reply("sum\n</think>\n\n9 </think>"),
                                                       "lora": reply("sum\n</think>\n\n\\boxed{9}")}),
            CompareRow(Prompt("What is 1/2 + 1/2?", "1"), {"base": reply("sum\n</think>\n\nIt is 1."),
                                                           "lora": reply("sum\n</think>\n\n\\boxed{\\frac{2}{2}}")})]
    result = CompareResult(rows, DEMO_PATTERN).to_json()
    frame = view.compare_frame(result)
    assert list(frame["base format"]) == ["✘ a stray </think> tag in the answer after </think>", "✔"]
    assert list(frame["LoRA matches"]) == ["✔ 9", "✘ $\\frac{2}{2}$"]  # the taken answer, drawn as math
    assert list(frame["base matches"])[1] == "✘ no answer found"  # "It is 1." holds no \boxed{}: nothing taken
    assert frame["LoRA answer"][0] == "$\\boxed{9}$"
    assert len(view.COMPARE_DATATYPES) == len(view.COMPARE_COLUMNS)
    summary = view.compare_summary_markdown(result)
    assert "**format** — keeps R1 format" in summary and "**matches** — matches reference" in summary
    assert "the final answer written inside `\\boxed{…}`" in summary and DEMO_PATTERN not in summary


def test_pane_stats_name_a_stray_tag_without_it_vanishing_as_html():
    stats = view.pane_stats(reply("sum\n</think>\n\n9 </think>"))
    assert "stray &lt;/think> tag" in stats


def components(app):
    return {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def test_the_tab_draws_math_and_downloads_in_one_click():
    from studio.ui import app as studio_app

    parts = components(studio_app.build_app())
    for pane in ("chat-base", "chat-lora", "chat-compare-table"):
        assert parts[pane].latex_delimiters == LATEX_DELIMITERS
        assert {"$", "$$", "\\(", "\\["} == {d["left"] for d in parts[pane].latex_delimiters}
    assert parts["chat-compare-table"].datatype[2] == "markdown"  # KaTeX renders markdown cells only
    # One button per file, which downloads it: no "make" button beside a look-alike "download" one.
    assert isinstance(parts["chat-zip"], gr.DownloadButton) and isinstance(parts["chat-report"], gr.DownloadButton)
    assert "chat-zip-download" not in parts and "chat-report-download" not in parts
    assert parts["chat-zip"].label != parts["chat-report"].label
    assert "No batch compare yet" in parts["chat-report-note"].value


def test_the_answer_pattern_is_said_in_words_and_a_bad_one_as_typed():
    from studio.ui.chat_tab import pattern_in_words, report_note

    assert pattern_in_words(DEMO_PATTERN) == "Counts: the final answer written inside `\\boxed{…}`."
    assert pattern_in_words("") == "Counts: no answer pattern."
    typed = r"\boxed{(\d+"
    said = pattern_in_words(typed)
    assert said.startswith("⚠") and f"“{typed}”" in said and "\\\\" not in said
    assert "Run **Batch compare**" in report_note(None)
    assert "3 prompts" in report_note({"summary": {"prompts": 3}})
