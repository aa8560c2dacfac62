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
