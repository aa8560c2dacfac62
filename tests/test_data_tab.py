"""The Data tab driven through gradio_client, as a script or another app would use it."""

import pytest
from gradio_client import handle_file

from studio.data.checks import CODES
from studio.config import SAMPLES_DIR

BROKEN = SAMPLES_DIR / "broken-sample.jsonl"
CLEAN = SAMPLES_DIR / "clean-sample.jsonl"


def check_file(client, path, measure=True, max_length=4096):
    return client.predict(handle_file(str(path)), "demo", max_length, measure, "", "", "", "", "", "",
                          api_name="/check_file")


def test_broken_sample_shows_every_code(client):
    overview, summary, code_filter, problems, histogram, preview_row, preview, *_ = check_file(client, BROKEN)
    assert "`conversation`" in overview
    codes = {row[0] for row in summary["data"]}
    assert codes == set(CODES), set(CODES) - codes
    assert {row[1] for row in problems["data"]} == set(CODES)
    assert preview_row == 2 and "parse_error" in preview
    assert histogram is not None


def test_clean_sample_has_no_errors(client):
    overview, summary, *_ = check_file(client, CLEAN)
    assert "No problems found" in overview
    assert summary["data"] in ([], [[None] * 4]) or not any(row[0] for row in summary["data"])


def test_unreadable_file_is_a_message_not_a_trace(client, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(Exception, match="not valid JSON"):
        check_file(client, bad, measure=False)


def test_source_by_path_and_field_mapping(client, tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text('{"q": "What is 1 + 1?", "a": "<think>\\n1 + 1 = 2.\\n</think>\\n\\nThe answer is 2."}\n')
    result = client.predict(str(path), "demo", 4096, False, "query_response", "q", "", "a", "", "",
                            api_name="/check_source")
    assert "No problems found" in result[0]


S1K = [{"question": f"What is {n} squared?", "solution": f"{n * n}",
        "gemini_thinking_trajectory": f"Gemini: {n} times {n} is {n * n}.", "gemini_attempt": f"Gemini says {n * n}.",
        "deepseek_thinking_trajectory": f"{n} times {n} is {n * n}.", "deepseek_attempt": f"The answer is {n * n}."}
       for n in range(2, 6)]


def test_chosen_mapping_runner_up_and_one_click_switch(client, tmp_path):
    import json

    path = tmp_path / "s1k.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in S1K))
    overview, *_ = check_file(client, path, measure=False)
    assert "deepseek_thinking_trajectory" in overview and "deepseek_attempt" in overview
    assert "Runner-up" in overview and "gemini_thinking_trajectory" in overview.split("Runner-up")[1]
    form, *fields = client.predict(api_name="/runner_up_mapping")
    assert "gemini_thinking_trajectory" in fields and "gemini_attempt" in fields
    overview, *_ = client.predict(str(path), "demo", 4096, False, form, *fields, api_name="/check_source")
    chosen = overview.split("Runner-up")[0]
    assert "gemini_thinking_trajectory" in chosen and "deepseek_thinking_trajectory" not in chosen


def test_lengths_name_the_tokenizer_that_measured(client):
    overview, *_ = check_file(client, CLEAN)
    assert "Measured with:" in overview and "demo" in overview and "exact counts" in overview


def test_a_file_with_no_valid_row_shows_its_report(client, tmp_path):
    path = tmp_path / "nothing-valid.jsonl"
    path.write_text('{"q": 1}\n{"q": 2}\n')
    overview, summary, _, _, histogram, *_ = check_file(client, path)
    assert "with errors:** 2" in overview and "unknown_format" in str(summary)
    assert "no row without errors to measure" in histogram["label"]  # not "every row fits"


def test_the_mapping_reaches_the_train_tab():
    from studio.data.validate import parse_mapping_text
    from studio.ui.train_tab import use_dataset

    path, mapping = use_dataset({"path": "/data/medical.jsonl", "mapping": "prompt=Question, answer=Response"})
    assert path == "/data/medical.jsonl" and parse_mapping_text(mapping) == {"prompt": "Question", "answer": "Response"}
    with pytest.raises(ValueError, match="not KEY=NAME"):
        parse_mapping_text("prompt=Question, Response")


def data_widgets():
    from studio.ui import app as studio_app

    app = studio_app.build_app()
    return app, {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def test_the_default_fixes_drop_a_row_cut_inside_its_reasoning(client, tmp_path):
    import json

    from studio.data.validate import cleaned_sets
    from studio.ui.data_tab import DEFAULT_FIXES

    long_reasoning = "<think>\n" + "2 + 2 = 4. " * 400 + "\n</think>\n\nThe answer is 4."
    rows = [{"conversation": [{"role": "user", "content": f"What is {n} + {n}?"},
                              {"role": "assistant", "content": reply}]}
            for n, reply in enumerate([long_reasoning, "<think>\n1 + 1 = 2.\n</think>\n\nThe answer is 2."], 1)]
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _, _, _, problems, *_ = check_file(client, path, max_length=256)
    assert [row[:2] for row in problems["data"]] == [[1, "truncated"]] and "inside the reasoning" in problems["data"][0][2]
    download, message, *_ = client.predict(DEFAULT_FIXES, "conversation", 256, api_name="/apply_fixes")
    try:
        written = [json.loads(line) for line in open(download["value"], encoding="utf-8")]
        assert len(written) == 1 and "1 + 1 = 2" in written[0]["conversation"][-1]["content"]
        assert "drop cut reasoning: 1" in message
    finally:
        for cleaned in cleaned_sets():
            if cleaned.name.startswith("cut-clean-"):
                cleaned.unlink()


def test_max_length_follows_the_model_and_the_train_tab():
    from studio.data.validate import training_max_length
    from studio.ui import data_tab

    assert data_tab.max_length_for_model("demo") == 512
    assert data_tab.max_length_for_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") >= 4096
    app, widgets = data_widgets()
    assert widgets["data-max-length"].value == training_max_length(widgets["data-model"].value)
    followed = {(trigger, output) for fn in app.fns.values() for trigger, _ in fn.targets
                for output in (block.elem_id for block in fn.outputs)
                if getattr(fn.fn, "__name__", "") == "follow_value"}
    ids = {block._id: block.elem_id for block in app.blocks.values()}
    assert {(ids[trigger], output) for trigger, output in followed} == {
        ("train-model", "data-model"), ("train-max-length", "data-max-length")}


def test_a_reloaded_page_offers_the_latest_cleaned_set(studio_home):
    import os

    from studio.config import DATASETS_DIR
    from studio.ui import data_tab

    DATASETS_DIR.mkdir(parents=True, exist_ok=True)
    older, newer = DATASETS_DIR / "old-clean-20260101-000000.jsonl", DATASETS_DIR / "new-clean-20260101-000001.jsonl"
    try:
        for path, when in ((older, 1_000_000_000), (newer, 2_000_000_000)):
            path.write_text("{}\n")
            os.utime(path, (when, when))
        handed, note = data_tab.latest_cleaned()
        assert handed == {"path": str(newer), "mapping": ""}
        assert newer.name in note and "Train tab" in note
    finally:
        older.unlink(missing_ok=True)
        newer.unlink(missing_ok=True)


def test_the_page_starts_ready_to_check_a_sample():
    from studio.ui import data_tab

    _, widgets = data_widgets()
    assert widgets["data-check"].value == "Check dataset"  # nothing was checked yet
    assert widgets["data-sample"].value == data_tab.FIRST_SAMPLE
    report = check_cache_report(CLEAN)
    assert data_tab.show(report, str(CLEAN))[-1].value == "Check again"


def check_cache_report(path, max_length=4096):
    from studio.data.validate import validate

    return validate(str(path), model="demo", max_length=max_length)


def test_the_histogram_spans_the_data_and_marks_max_length():
    from studio.data import view

    report = check_cache_report(SAMPLES_DIR / "demo-train.jsonl")
    lengths = report.lengths.lengths.array()
    frame, width = view.histogram_frame(report)
    assert frame["tokens"].min() <= lengths.min() < frame["tokens"].min() + width
    assert frame["tokens"].max() <= lengths.max() < frame["tokens"].max() + width
    assert (lengths.max() - lengths.min()) / width <= view.HISTOGRAM_BINS  # not one bar of a 4,096-token axis
    assert frame["rows"].sum() == len(lengths) and set(frame["fits"]) == {view.WITHIN}
    assert "max_length 4,096: every row fits" in view.histogram_label(report)

    middle = int(sorted(lengths)[len(lengths) // 2])
    report = check_cache_report(SAMPLES_DIR / "demo-train.jsonl", max_length=middle)
    frame, width = view.histogram_frame(report)
    holding = frame[frame["tokens"] == middle // width * width]
    assert frame[frame["fits"] == view.OVER]["rows"].sum() == int((lengths > middle).sum())
    assert f"max_length {middle:,}" in view.histogram_label(report) and "over it" in view.histogram_label(report)
    assert len(holding) in (1, 2)  # the bin that holds max_length: split where the rows cross it


def test_the_export_keeps_a_messages_file_in_messages(client, tmp_path):
    import json

    from studio.data.validate import cleaned_sets

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "What is 1 + 1?"}, {
        "role": "assistant", "content": "<think>\n1 + 1 = 2.\n</think>\n\nThe answer is 2."}]}) + "\n")
    *_, style = check_file(client, path, measure=False)
    assert style["value"] == "messages" and "Kept as your file's layout" in style["info"]
    report = check_cache_report(BROKEN)
    from studio.ui import data_tab

    shown = data_tab.show(report, str(BROKEN))[-2]
    assert shown.value == report.dataset.format == "conversation"  # a conversation file stays conversation
    for cleaned in cleaned_sets():
        if cleaned.name.startswith("chat-clean-"):
            cleaned.unlink()
