"""Hostile inputs: a file small on disk or merely large costs what its good rows cost, and answers with a report.

The limits are shrunk here (a row limit of 2,000 characters, small read blocks) so the cases stay small; the
benchmark (studio.benchmarks.hostile_inputs) runs the real sizes, and the last test the real Parquet bomb.
"""

import csv
import io
import json
import threading
import time
import tracemalloc

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studio.data import checks, readers
from studio.data.checks import check_dataset, measure_lengths
from studio.data.readers import DatasetUnreadable, RowTooLarge, read_raw_rows
from studio.data.records import load_dataset

ROW_CHARS = 2000
REPLY = "<think>\nOne and one make two.\n</think>\n\nTwo."
GOOD = {"query": "What is 1 + 1?", "response": REPLY}


@pytest.fixture
def limits(monkeypatch):
    """Small limits, and a spy on orjson.loads: the sizes of what was parsed."""
    monkeypatch.setattr(readers, "MAX_ROW_CHARS", ROW_CHARS)
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 12 * ROW_CHARS)
    monkeypatch.setattr(readers, "_BLOCK", 4096)
    monkeypatch.setattr(checks, "MAX_ROW_CHARS", ROW_CHARS)
    parsed = []
    loads = orjson.loads

    def spy(data):
        parsed.append(len(data))
        return loads(data)

    monkeypatch.setattr(readers.orjson, "loads", spy)
    return parsed


def big_reply(chars):
    return "<think>\n" + "x" * chars + "\n</think>\n\nok"


def jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return str(path)


def problems(dataset):
    return {record.number: record.problem for record in dataset.records if record.problem}


# --------------------------------------------------------------------------------------------------
# JSONL


def test_a_jsonl_line_over_the_limit_is_row_too_large_and_never_parsed(tmp_path, limits):
    escaped = json.dumps({"query": "é?", "response": "<think>\n" + "é" * 1500 + "\n</think>\n\nok"})  # \u00e9
    assert len(escaped) > ROW_CHARS  # its bytes are over the limit, its characters are not
    path = jsonl(tmp_path / "rows.jsonl", [GOOD, {"query": "q", "response": big_reply(2_000_000)}, GOOD,
                                           {"query": "q", "response": big_reply(5000)}, escaped, GOOD])
    dataset = load_dataset(path)
    assert max(limits) <= 12 * ROW_CHARS  # the 2 MB line was never handed to the parser
    assert traced_peak(lambda: read_raw_rows(path)) < 500_000  # nor held: it is skipped 4 KB at a time
    assert [record.number for record in dataset.records] == [1, 2, 3, 4, 5, 6]
    found = problems(dataset)
    assert set(found) == {2, 4}
    code, message = found[2]
    assert code == "row_too_large"
    assert "line 2" in message and "bytes" in message and f"{ROW_CHARS:,}" in message and "split it" in message
    assert found[4][0] == "row_too_large" and "characters" in found[4][1]
    assert dataset.records[4].messages[1][1].count("é") == 1500
    report = check_dataset(dataset)
    assert {issue.row: issue.code for issue in report.issues if issue.severity == "error"} == {
        2: "row_too_large", 4: "row_too_large"}
    assert report.valid_rows == 4


def test_a_single_huge_line_answers_with_a_report(tmp_path, limits, demo_tokenizer):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"query": "q", "response": big_reply(300_000)}), encoding="utf-8")  # no newline
    report = check_dataset(load_dataset(str(path)), tokenizer=demo_tokenizer)
    assert report.summary == {"row_too_large": 1} and report.rows == 1
    assert report.lengths.lengths == {}


def test_a_dataset_is_read_up_to_its_limits_and_says_the_rest_was_not_read(tmp_path, limits, monkeypatch):
    monkeypatch.setattr(readers, "MAX_DATASET_ROWS", 10)
    dataset = load_dataset(jsonl(tmp_path / "many.jsonl", [GOOD] * 50))
    assert len(dataset.records) == 11 and dataset.records[-1].number == 11
    code, message = dataset.records[-1].problem
    assert code == "row_too_large" and message.startswith("line 11 and everything after it")
    assert "not read: the studio reads at most 10 rows of one dataset" in message
    assert dataset.not_read == message
    report = check_dataset(dataset)
    assert report.to_json()["not_read"] == message and report.summary["row_too_large"] == 1

    monkeypatch.setattr(readers, "MAX_DATASET_ROWS", 1000)
    monkeypatch.setattr(readers, "MAX_DATASET_CHARS", 10 * len(json.dumps(GOOD)))
    dataset = load_dataset(jsonl(tmp_path / "chars.jsonl", [GOOD] * 50))
    assert [record.number for record in dataset.records if not record.problem] == list(range(1, 11))
    assert "characters" in dataset.not_read and dataset.records[-1].number == 11
    # Everything fits: no notice, and the JSON report keeps its usual fields.
    dataset = load_dataset(jsonl(tmp_path / "few.jsonl", [GOOD] * 3))
    assert dataset.not_read is None and "not_read" not in check_dataset(dataset).to_json()


def test_many_rows_of_an_unknown_layout_get_short_messages_after_the_first(tmp_path):
    dataset = load_dataset(jsonl(tmp_path / "unknown.jsonl", [{"x": index} for index in range(100)]))
    assert dataset.format == "unknown"
    first, last = dataset.records[0].problem[1], dataset.records[-1].problem[1]
    assert first.startswith("line 1: no known layout fits its fields (x)") and "--field" in first
    assert last == "line 100: the same fields as line 1, which no known layout fits (see it)"


# --------------------------------------------------------------------------------------------------
# JSON arrays


def test_a_json_array_is_read_element_by_element(tmp_path, limits):
    rows = [GOOD, {"query": "q", "response": big_reply(100_000)}, GOOD, {"query": "q", "response": big_reply(5000)}]
    text = json.dumps({"data": rows, "version": 2}, indent=1)
    text = text.replace('"version": 2', '"version": [2]', 1)  # two lists: `data` wins
    path = tmp_path / "rows.json"
    path.write_text(text, encoding="utf-8")
    assert len(text) > ROW_CHARS  # past the one-parse size: the element reader runs
    dataset = load_dataset(str(path))
    assert max(limits) <= 12 * ROW_CHARS
    assert [record.number for record in dataset.records] == [1, 2, 3, 4]
    assert {number: problem[0] for number, problem in problems(dataset).items()} == {
        2: "row_too_large", 4: "row_too_large"}
    assert "record 2" in problems(dataset)[2][1]
    assert dataset.records[0].messages[0] == ("user", GOOD["query"])


def test_a_broken_json_element_is_a_parse_error_and_the_others_load(tmp_path, limits):
    path = tmp_path / "broken.json"
    path.write_text("[" + json.dumps(GOOD) + ', {"query": oops}, ' + json.dumps(GOOD) + "]", encoding="utf-8")
    dataset = load_dataset(str(path))
    assert [record.problem and record.problem[0] for record in dataset.records] == [None, "parse_error", None]
    assert "record 2 is not valid JSON" in dataset.records[1].problem[1]


@pytest.mark.parametrize("text,message", [
    ("[" + json.dumps(GOOD) * 1 + ", {", "never closed"),
    ("[" + json.dumps(GOOD) + "] trailing", "unexpected data after the list"),
    ('"just a string"', "expected a list of rows"),
    ("   ", "is empty"),
])
def test_a_json_file_that_is_not_a_list_of_rows_says_why(tmp_path, limits, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text + " " * 3000, encoding="utf-8")  # past the one-parse size
    with pytest.raises(DatasetUnreadable, match=message):
        load_dataset(str(path))


def test_json_lines_in_a_big_json_file_are_read_as_lines(tmp_path, limits):
    path = tmp_path / "lines.json"
    path.write_text("\n".join(json.dumps(GOOD) for _ in range(60)), encoding="utf-8")
    assert len(load_dataset(str(path)).records) == 60


# --------------------------------------------------------------------------------------------------
# CSV


def csv_bytes(rows):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["query", "response"])
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def test_a_csv_with_a_bad_byte_loses_that_record_only(tmp_path):
    reply = "<think>\nline one\nline \"two\", with a comma\n</think>\n\nTwo."
    data = csv_bytes([[f"What is {index}?", reply] for index in range(1, 6)])
    at = data.index(b"What is 3?") + 4
    data = data[:at] + b"\xff" + data[at:]
    path = tmp_path / "bad-byte.csv"
    path.write_bytes(data)
    dataset = load_dataset(str(path))
    assert [record.number for record in dataset.records] == [1, 2, 3, 4, 5]
    found = problems(dataset)
    assert list(found) == [3]
    code, message = found[3]
    assert code == "parse_error" and "record 3" in message and f"byte offset {at:,}" in message and "0xff" in message
    assert dataset.records[3].messages == [("user", "What is 4?"), ("assistant", reply)]


def test_a_bad_byte_in_the_csv_header_says_where(tmp_path):
    path = tmp_path / "bad-header.csv"
    path.write_bytes(b"que\xe9ry,response\nq,r\n")
    with pytest.raises(DatasetUnreadable, match=r"header row is not UTF-8 \(byte 0xe9 at byte offset 3\)"):
        load_dataset(str(path))


def test_a_csv_record_over_the_limit_is_row_too_large(tmp_path, limits):
    data = csv_bytes([["q1", REPLY], ["q2", big_reply(100_000).replace("x", 'x\n"')], ["q3", big_reply(5000)],
                      ["q4", REPLY]])
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    dataset = load_dataset(str(path))
    assert [record.number for record in dataset.records] == [1, 2, 3, 4]
    assert {number: problem[0] for number, problem in problems(dataset).items()} == {
        2: "row_too_large", 3: "row_too_large"}
    assert dataset.records[3].messages == [("user", "q4"), ("assistant", REPLY)]


# --------------------------------------------------------------------------------------------------
# Parquet


def test_a_parquet_dictionary_bomb_costs_one_string(tmp_path, limits, monkeypatch):
    monkeypatch.setattr(readers, "_SHARE_CHARS", 100_000)  # the real threshold is 16M characters saved
    text = big_reply(1500)  # under the row limit; 2,000 rows of it
    indices = pa.array([0] * 2000, type=pa.int32())
    table = pa.table({"query": pa.DictionaryArray.from_arrays(indices, pa.array(["What?"])),
                      "response": pa.DictionaryArray.from_arrays(indices, pa.array([text]))})
    path = tmp_path / "bomb.parquet"
    pq.write_table(table, path, compression="zstd", store_schema=False)  # read back as plain strings
    assert pq.ParquetFile(path).schema_arrow.field("response").type == pa.string()
    _, rows = read_raw_rows(str(path))
    assert len(rows) == 2000 and rows[0][1]["response"] == text
    assert all(row["response"] is rows[0][1]["response"] for _, row, _ in rows)  # one Python string


def traced_peak(function):
    """The peak of Python's own allocations while `function` runs (Arrow's buffers are not in it)."""
    function()  # imports and caches first
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_parquet_row_over_the_limit_is_never_converted(tmp_path, limits):
    turns = lambda reply: [{"from": "human", "value": "q"}, {"from": "gpt", "value": reply}]  # noqa: E731
    rows = [{"conversations": turns(REPLY)}, {"conversations": turns(big_reply(20_000_000))},
            {"conversations": turns(REPLY)}, {"conversations": None}]
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, use_dictionary=False)
    del rows
    assert traced_peak(lambda: read_raw_rows(str(path))) < 2_000_000  # the 20 MB reply never became a str
    dataset = load_dataset(str(path))
    assert {number: problem[0] for number, problem in problems(dataset).items()} == {
        2: "row_too_large", 4: "unknown_format"}
    assert "record 2" in problems(dataset)[2][1] and "20,000,0" in problems(dataset)[2][1]
    assert dataset.records[2].messages[1] == ("assistant", REPLY)


def test_a_parquet_file_past_the_dataset_limit_keeps_the_first_rows(tmp_path, limits, monkeypatch):
    monkeypatch.setattr(readers, "MAX_DATASET_CHARS", 10_000)
    path = tmp_path / "many.parquet"
    pq.write_table(pa.Table.from_pylist([{"query": f"q{index}", "response": big_reply(1000)} for index in range(30)]),
                   path, use_dictionary=False)
    dataset = load_dataset(str(path))
    kept = [record.number for record in dataset.records if not record.problem]
    assert kept == list(range(1, len(kept) + 1)) and 5 <= len(kept) < 10
    assert dataset.not_read.startswith(
        f"record {len(kept) + 1} and everything after it ({30 - len(kept)} more records)")


# --------------------------------------------------------------------------------------------------
# Token lengths


class SpyTokenizer:
    """A real tokenizer that records each call's texts, and raises `error` on a text holding `trigger`."""

    is_fast = False  # so the studio calls it, not the Rust core behind it (studio.data.template.token_ids)

    def __init__(self, inner, trigger=None, error=None):
        self.inner, self.trigger, self.error, self.calls = inner, trigger, error, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, texts, **kwargs):
        self.calls.append([len(text) for text in texts])
        if self.trigger and any(self.trigger in text for text in texts):
            raise self.error
        return self.inner(texts, **kwargs)


def dataset_of(tmp_path, replies):
    rows = [{"query": f"Question {index}?", "response": reply} for index, reply in enumerate(replies, 1)]
    return load_dataset(jsonl(tmp_path / "rows.jsonl", rows))


def test_lengths_are_measured_in_batches_bounded_by_characters(tmp_path, demo_tokenizer):
    dataset = dataset_of(tmp_path, [big_reply(300 + index) for index in range(40)])
    spy = SpyTokenizer(demo_tokenizer)
    report = check_dataset(dataset)
    stats = measure_lengths(report, spy, 4096, batch_chars=1000)
    assert len(stats.lengths) == 40
    assert max(len(call) for call in spy.calls) <= 3 and max(sum(call) for call in spy.calls) <= 1000 + 3 * 200


def test_a_row_over_the_limit_never_reaches_the_tokenizer(tmp_path, demo_tokenizer, monkeypatch):
    monkeypatch.setattr(checks, "MAX_ROW_CHARS", 5000)  # the reader's limit is the real one: the row loads
    dataset = dataset_of(tmp_path, [REPLY, big_reply(20_000), REPLY])
    spy = SpyTokenizer(demo_tokenizer)
    report = check_dataset(dataset, tokenizer=spy)
    assert max(max(call) for call in spy.calls) < 5000
    assert [(issue.row, issue.code) for issue in report.issues if issue.severity == "error"] == [(2, "row_too_large")]
    assert set(report.lengths.lengths) == {1, 3}


class PanicException(BaseException):
    """What pyo3 raises for a Rust panic: a BaseException, which `except Exception` does not catch."""


def test_a_tokenizer_panic_is_a_row_issue_not_a_crash(tmp_path, demo_tokenizer):
    dataset = dataset_of(tmp_path, [REPLY, REPLY.replace("two", "BOOM"), REPLY.replace("two", "three")])
    spy = SpyTokenizer(demo_tokenizer, "BOOM", PanicException("called `Result::unwrap()` on an `Err` value"))
    report = check_dataset(dataset, tokenizer=spy)
    errors = [issue for issue in report.issues if issue.severity == "error"]
    assert [(issue.row, issue.code) for issue in errors] == [(2, "row_too_large")]
    assert "the tokenizer failed on this row (PanicException: called `Result::unwrap()`" in errors[0].message
    assert set(report.lengths.lengths) == {1, 3}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupts_from_the_tokenizer_are_not_swallowed(tmp_path, demo_tokenizer, error):
    dataset = dataset_of(tmp_path, [REPLY.replace("two", "BOOM")])
    with pytest.raises(type(error)):
        check_dataset(dataset, tokenizer=SpyTokenizer(demo_tokenizer, "BOOM", error))


def test_repeated_rows_are_tokenized_once(tmp_path, demo_tokenizer):
    rows = [{"query": "Same?", "response": big_reply(400)}] * 30 + [{"query": "Other?", "response": REPLY}]
    dataset = load_dataset(jsonl(tmp_path / "same.jsonl", rows))
    spy = SpyTokenizer(demo_tokenizer)
    report = check_dataset(dataset, tokenizer=spy, max_length=50)
    assert sum(len(call) for call in spy.calls) == 2 * 3  # two distinct rows, three parts each
    assert len(report.lengths.lengths) == 31 and len({report.lengths.lengths[row] for row in range(1, 31)}) == 1
    truncated = [issue for issue in report.issues if issue.code == "truncated"]
    assert len(truncated) == 30 and truncated[-1].message.startswith("line 30: ")


# --------------------------------------------------------------------------------------------------
# Hub ids with no network


def test_a_hub_id_with_no_network_fails_within_3_seconds(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    release = threading.Event()

    def hangs(self, repo_id, **kwargs):  # what a DNS lookup with no network does: no answer, no timeout
        release.wait(30)
        raise AssertionError("unreachable")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", hangs)
    start = time.perf_counter()
    try:
        with pytest.raises(DatasetUnreadable, match="did not answer within 2.5 s") as raised:
            read_raw_rows("someone/some-r1-dataset")
    finally:
        release.set()
    assert time.perf_counter() - start < 3.0
    assert "Download the dataset where there is network and pass the file instead" in str(raised.value)


def test_a_hub_dataset_is_read_within_the_limits(monkeypatch, limits):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(readers, "_probe_hub", lambda repo_id: None)
    rows = [GOOD, {"query": "q", "response": big_reply(50_000)}, GOOD]
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id, split: datasets.Dataset.from_list(rows))
    kind, read = read_raw_rows("someone/some-r1-dataset")
    assert kind == "hub" and [number for number, _, _ in read] == [1, 2, 3]
    assert read[0][1] == GOOD and read[1][1] is None and read[1][2].code == "row_too_large"


def test_row_problems_are_messages_with_a_code():
    problem = RowTooLarge("line 3 is too large")
    assert problem.code == "row_too_large" and str(problem) == "line 3 is too large" and f"{problem}"


# --------------------------------------------------------------------------------------------------
# The real Parquet bomb, through the command line


def test_the_parquet_bomb_stays_under_2_gib(tmp_path):
    from studio.benchmarks.hostile_inputs import parquet_bomb, run_validate

    path = parquet_bomb(tmp_path / "bomb.parquet")
    assert path.stat().st_size < 2048  # 5,000 rows of a 100k-character reply: 500 MB once expanded
    result = run_validate(path, "--json", limit_gb=6, timeout=300)
    assert result["rc"] == 0, result["output"][-2000:]
    assert result["peak_rss_mib"] < 2048, result
    report = json.loads(next(line for line in result["output"].splitlines() if line.startswith("{")))
    assert report["rows"] == report["valid_rows"] == 5000
    assert report["summary"] == {"duplicate": 4999, "truncated": 5000}
    assert report["lengths"]["count"] == 5000
