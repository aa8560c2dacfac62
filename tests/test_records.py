"""Loading every supported file type and detecting every format, normalized to the same messages."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studio.data.mapping import parse_mapping_overrides
from studio.data.readers import DatasetUnreadable, read_raw_rows
from studio.data.records import load_dataset

PROMPT, REASONING, ANSWER = "What is 3 + 5?", "3 + 5 = 8.", "The answer is 8."
REPLY = f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"
EXPECTED = [("user", PROMPT), ("assistant", REPLY)]

FORMAT_ROWS = {
    "query_response": {"query": PROMPT, "response": REPLY},
    "conversation": {"conversation": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": REPLY}]},
    "messages": {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": REPLY}]},
    "alpaca": {"instruction": PROMPT, "input": "", "output": REPLY},
    "sharegpt": {"conversations": [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": REPLY}]},
    "reasoning_field": {"question": PROMPT, "reasoning_content": REASONING, "answer": ANSWER},
}


def write(path, rows):
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.mark.parametrize("form", list(FORMAT_ROWS))
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_each_format_in_each_file_type(tmp_path, form, suffix):
    path = write(tmp_path / f"data{suffix}", [FORMAT_ROWS[form], FORMAT_ROWS[form]])
    dataset = load_dataset(path)
    assert dataset.format == form
    assert [record.messages for record in dataset.records] == [EXPECTED, EXPECTED]
    assert [record.number for record in dataset.records] == [1, 2]


def test_alpaca_input_and_system(tmp_path):
    row = {"instruction": "Add these.", "input": "3 and 5", "output": REPLY, "system": "Be brief."}
    dataset = load_dataset(write(tmp_path / "a.jsonl", [row]))
    assert dataset.records[0].messages == [("system", "Be brief."), ("user", "Add these.\n\n3 and 5"),
                                           ("assistant", REPLY)]


def test_jsonl_numbers_are_file_lines(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(FORMAT_ROWS["query_response"]) + "\n\n" + "{bad\n", encoding="utf-8")
    dataset = load_dataset(str(path))
    assert [record.number for record in dataset.records] == [2, 4]
    assert dataset.records[1].problem[0] == "parse_error"


def test_json_with_one_row_per_line_is_read_as_jsonl(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("\n".join(json.dumps(FORMAT_ROWS["messages"]) for _ in range(3)))
    assert len(load_dataset(str(path)).records) == 3


def test_csv_row_with_wrong_field_count_is_a_parse_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('query,response\n"What?","<think>x</think>y"\nonly-one-field\n', encoding="utf-8")
    records = load_dataset(str(path)).records
    assert records[1].problem[0] == "parse_error" and "record 2" in records[1].problem[1]


@pytest.mark.parametrize("name,content,message", [
    ("missing.jsonl", None, "no such file"),
    ("data.txt", "hello", "unsupported file type"),
    ("broken.json", "[{", "not valid JSON"),
    ("empty.jsonl", "", "holds no rows"),
    ("empty.csv", "", "header row"),
    ("bad.parquet", "not parquet", "not a readable Parquet file"),
])
def test_unreadable_inputs_say_why(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetUnreadable, match=message):
        load_dataset(str(path))


def test_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetUnreadable, match="HF_HUB_OFFLINE"):
        read_raw_rows("someone/some-r1-dataset")


def test_mapping_override(tmp_path):
    row = {"q": PROMPT, "a": REPLY}
    path = write(tmp_path / "custom.jsonl", [row])
    assert load_dataset(path).format == "unknown"
    mapping = parse_mapping_overrides(None, {"format": "query_response", "prompt": "q", "response": "a"})
    dataset = load_dataset(path, mapping)
    assert dataset.records[0].messages == EXPECTED


def test_mapping_override_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown format"):
        parse_mapping_overrides(None, {"format": "csv-ish"})
    with pytest.raises(ValueError, match="unknown mapping field"):
        parse_mapping_overrides(None, {"format": "alpaca", "answer_col": "x"})


def test_other_fields_are_kept_as_extra_on_every_path(tmp_path):
    rows = [{"query": PROMPT, "response": REPLY, "id": 7},  # the inline pair path
            {"query": PROMPT, "response": REPLY},
            {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": REPLY}], "id": 8}]
    first, second = load_dataset(write(tmp_path / "pairs.jsonl", rows[:2])).records
    assert first.extra == {"id": 7} and second.extra is None
    (third,) = load_dataset(write(tmp_path / "turns.jsonl", rows[2:])).records
    assert third.messages == EXPECTED and third.extra == {"id": 8}


def test_a_top_level_system_is_kept_once(tmp_path):
    turns = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": REPLY}]
    rows = [{"system": "Be brief.", "messages": turns},
            {"system": "Be brief.", "messages": [{"role": "system", "content": "Own system."}, *turns]}]
    records = load_dataset(write(tmp_path / "s.jsonl", rows)).records
    assert records[0].messages == [("system", "Be brief."), *EXPECTED]
    assert records[1].messages == [("system", "Own system."), *EXPECTED]


def test_turn_keys_decide_the_turns_layout(tmp_path):
    rows = [{"conversations": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": REPLY}]}]
    dataset = load_dataset(write(tmp_path / "c.jsonl", rows))
    assert dataset.format == "messages" and dataset.mapping.turns == "conversations"
    assert dataset.records[0].messages == EXPECTED


def test_detection_reads_a_sample_and_reports_its_evidence(tmp_path):
    rows = [FORMAT_ROWS["reasoning_field"]] * 600 + [{"unrelated": 1}] * 5
    dataset = load_dataset(write(tmp_path / "many.jsonl", rows))
    assert dataset.format == "reasoning_field"
    assert dataset.mapping.evidence == {"rows": 500, "mapped": 500, "with_reasoning": 500}
    assert dataset.mapping.to_json()["evidence"] == dataset.mapping.evidence
    assert dataset.records[-1].problem[0] == "missing_field"
    # The runner-up maps rows too (the same answer without the reasoning field): shown, best first.
    assert dataset.alternatives and dataset.alternatives[0].reasoning is None


def test_forcing_a_layout_keeps_the_fields_found_for_its_kind(tmp_path):
    rows = [{"question": PROMPT, "answer": REPLY}]
    path = write(tmp_path / "qa.jsonl", rows)
    dataset = load_dataset(path, overrides={"format": "alpaca"})
    assert dataset.format == "alpaca" and dataset.records[0].messages == EXPECTED
    with pytest.raises(ValueError, match=r"needs the reasoning: name the field with --field reasoning=NAME"):
        load_dataset(path, overrides={"format": "reasoning_field"})
