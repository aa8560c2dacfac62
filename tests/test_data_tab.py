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
    overview, summary, *_ = check_file(client, path)
    assert "with errors:** 2" in overview and "unknown_format" in str(summary)


def test_the_mapping_reaches_the_train_tab():
    from studio.data.validate import parse_mapping_text
    from studio.ui.train_tab import use_dataset

    path, mapping = use_dataset({"path": "/data/medical.jsonl", "mapping": "prompt=Question, answer=Response"})
    assert path == "/data/medical.jsonl" and parse_mapping_text(mapping) == {"prompt": "Question", "answer": "Response"}
    with pytest.raises(ValueError, match="not KEY=NAME"):
        parse_mapping_text("prompt=Question, Response")
