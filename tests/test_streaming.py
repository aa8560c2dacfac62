"""Checks that stream: rows read, mapped and checked a block at a time, kept on disk (studio.data.record_store),
the report holding issues, counts and lengths; the preview and the export read the rows back."""

import datetime
import json
import os
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studio.data import readers
from studio.data.checks import RowChecker, apply_fixes, check_dataset
from studio.data.export import export_jsonl, write_jsonl
from studio.data.record_store import RecordStore, spool_folder
from studio.data.records import Dataset, Record, load_dataset
from studio.data.validate import fix_and_save, validate
from studio.data.view import row_preview_markdown

REPLY = "<think>\nAdd them: {a} + {b} = {s}.\n</think>\n\nThe answer is {s}."


def good(index: int, filler: str = "") -> dict:
    a, b = index, index + 1
    return {"query": f"What is {a} + {b}?{filler}", "response": REPLY.format(a=a, b=b, s=a + b)}


def write_jsonl_rows(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def records_of(count: int, start: int = 1) -> list[Record]:
    return [Record(number, [("user", f"q{number}"), ("assistant", REPLY.format(a=number, b=1, s=number + 1))])
            for number in range(start, start + count)]


# -- the store ------------------------------------------------------------------------------------------


def test_a_store_writes_chunks_to_an_anonymous_file_and_reads_any_row_back():
    before = set(os.listdir(spool_folder()))
    store = RecordStore(chunk_chars=500, chunk_rows=7)
    records = records_of(100)
    for record in records[:40]:
        store.append(record)  # one at a time: chunks by size or count
    store.extend(records[40:90])  # a block: one chunk
    store.extend([])
    for record in records[90:]:
        store.append(record)  # the last few stay in memory
    assert store.on_disk > 0 and len(store) == 100
    assert list(store) == records
    assert store[0] == records[0] and store[57] == records[57] and store[-1] == records[-1]
    assert store[10:13] == records[10:13]
    assert store.index_of(58) == 57
    with pytest.raises(KeyError):
        store.index_of(1000)
    with pytest.raises(IndexError):
        store[100]
    assert set(os.listdir(spool_folder())) == before  # nothing named on disk: the file goes with the store


def test_a_store_keeps_values_marshal_cannot_write_and_tuples_as_tuples():
    store = RecordStore(chunk_rows=2)
    stamp = datetime.datetime(2025, 1, 28, 12, 30)
    records = [Record(1, [("user", "q"), ("assistant", "a")], None, {"created": stamp, "tags": ("x", "y")}),
               Record(2, [], ("parse_error", "line 2 is not valid JSON")),
               Record(3, [("user", "q")], None, {"score": float("nan")})]
    store.extend(records)
    back = list(store)
    assert back[0].extra == {"created": stamp, "tags": ("x", "y")} and back[0].messages[0] == ("user", "q")
    assert back[1].problem == ("parse_error", "line 2 is not valid JSON")
    assert back[2].extra["score"] != back[2].extra["score"]  # NaN kept as NaN, not turned into null


def test_a_full_disk_says_so_and_where(monkeypatch):
    import tempfile

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_room)
    store = RecordStore()
    with pytest.raises(readers.DatasetUnreadable, match="No space left.*free some disk space"):
        store.extend(records_of(3))


# -- reading in blocks -------------------------------------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 2048)
    monkeypatch.setattr(readers, "MAX_ROW_CHARS", 4000)  # a .json file this small would be parsed whole
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 48000)
    from studio.data.readers import json_list, parquet

    monkeypatch.setattr(json_list, "_WINDOW_BYTES", 2048)
    monkeypatch.setattr(parquet, "_BATCH_ROWS", 16)


def formats(tmp_path, rows):
    jsonl = write_jsonl_rows(tmp_path / "rows.jsonl", rows)
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table, row_group_size=16)
    csv = tmp_path / "rows.csv"
    import csv as csv_module

    with open(csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv_module.DictWriter(handle, fieldnames=["query", "response"])
        writer.writeheader()
        writer.writerows(rows)
    return [jsonl, array, table, csv]


def test_every_reader_hands_its_rows_over_in_blocks_and_keeps_none(tmp_path, small_blocks):
    rows = [good(index) for index in range(200)]
    for path in formats(tmp_path, rows):
        blocks = []
        kind, rest = readers.read_raw_rows(str(path), sink=lambda block, label, done: blocks.append(
            (len(block), label, done)))
        assert rest == [] and rest.not_read is None, path.name
        assert len(blocks) > 3, path.name  # streamed, not handed over whole at the end
        assert sum(count for count, _, _ in blocks) == 200, path.name
        assert {label for _, label, _ in blocks} == {"line" if kind == "jsonl" else "record"}
        fractions = [done for _, _, done in blocks if done is not None]
        assert fractions == sorted(fractions) and all(0 <= done <= 1 for done in fractions), path.name
        # the same rows as reading them whole
        whole = readers.read_raw_rows(str(path))[1]
        assert len(whole) == 200 and whole[0][1]["query"] == rows[0]["query"]


def test_what_the_sink_raises_is_raised_as_it_is_not_as_an_unreadable_file(tmp_path, small_blocks):
    path = write_jsonl_rows(tmp_path / "rows.jsonl", [good(index) for index in range(200)])

    def full(block, label, done):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left") as raised:
        readers.read_raw_rows(str(path), sink=full)
    assert not isinstance(raised.value, readers.DatasetUnreadable)


def test_the_dataset_limits_still_stop_a_streamed_read(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setattr(readers, "MAX_DATASET_ROWS", 150)
    path = write_jsonl_rows(tmp_path / "rows.jsonl", [good(index) for index in range(200)])
    dataset = load_dataset(str(path))
    assert len(dataset.records) == 151 and "line 151 and everything after it" in dataset.not_read
    assert dataset.records[-1].problem[0] == "row_too_large"


def test_a_layout_is_detected_from_rows_spread_over_several_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 256)  # a row or two a block: detection waits for its sample
    rows = [{"id": index, **good(index)} for index in range(700)]
    path = write_jsonl_rows(tmp_path / "rows.jsonl", rows)
    path.write_text("not json\n" * 50 + path.read_text(encoding="utf-8"), encoding="utf-8")  # no rows to sample
    dataset = load_dataset(str(path))
    assert dataset.mapping.prompt == "query" and dataset.mapping.response == "response"
    assert dataset.mapping.evidence["rows"] == 500 and len(dataset.records) == 750
    assert dataset.records[0].problem[0] == "parse_error" and dataset.records[749].extra == {"id": 699}


def test_an_override_applies_to_the_rows_read_before_and_after_the_layout_is_known(tmp_path, small_blocks):
    path = write_jsonl_rows(tmp_path / "rows.jsonl", [good(index) for index in range(600)])
    dataset = load_dataset(str(path), overrides={"prompt": "question_text"})
    assert {record.problem[0] for record in dataset.records} == {"missing_field"}
    assert "line 600: field `question_text` (the prompt) is missing" in dataset.records[599].problem[1]


# -- checking while reading --------------------------------------------------------------------------------


def test_checking_while_reading_finds_what_checking_afterwards_finds(tmp_path, small_blocks, demo_tokenizer):
    rows = [good(index % 60) for index in range(300)]  # repeats: rows 61.. repeat rows 1..60
    rows[7] = {"query": "Broken?", "response": "no reasoning at all"}
    rows[100] = {"query": "Raw R1", "response": "thinking...\n</think>\n\n42"}
    path = write_jsonl_rows(tmp_path / "rows.jsonl", rows)
    streamed = validate(str(path), model="demo", max_length=64, prepare=False)
    dataset = load_dataset(str(path))
    afterwards = check_dataset(dataset, tokenizer=demo_tokenizer, max_length=64)
    assert [issue.to_dict() for issue in streamed.issues] == [issue.to_dict() for issue in afterwards.issues]
    assert dict(streamed.lengths.lengths) == dict(afterwards.lengths.lengths)
    # 240 repeats less row 101 (replaced) and row 68 (now the first good(7): row 8 was replaced)
    assert streamed.summary["duplicate"] == 238 and 68 not in streamed.duplicates
    assert streamed.duplicates[61] == 1 and streamed.duplicates[300] == 60
    assert streamed.lengths.lengths[61] == streamed.lengths.lengths[1]


def test_a_check_holds_a_fraction_of_the_rows_text(tmp_path, monkeypatch):
    """20k rows of 2k characters (43 MB): a check without lengths holds a block of rows at a time and what the
    report keeps, not the rows (as it did before: over 100 MB)."""
    monkeypatch.setattr(readers, "_BLOCK", 1 << 20)
    filler = " Show every step." * 120
    path = write_jsonl_rows(tmp_path / "rows.jsonl", [good(index, filler) for index in range(20_000)])
    text = path.stat().st_size
    tracemalloc.start()
    try:
        report = validate(str(path), lengths=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rows == 20_000 and report.valid_rows == 20_000
    assert isinstance(report.dataset.records, RecordStore) and report.dataset.records.on_disk > text // 2
    assert peak < text / 4, f"peak {peak:,} bytes while checking {text:,} bytes of rows"


def test_the_row_preview_and_the_excerpts_read_rows_back_from_disk(tmp_path, small_blocks):
    rows = [good(index) for index in range(3000)]
    rows[2500] = {"query": "Which?", "response": "no reasoning"}
    report = validate(str(write_jsonl_rows(tmp_path / "rows.jsonl", rows)), lengths=False)
    assert report.dataset.records.on_disk > 0
    preview = row_preview_markdown(report, 2501)
    assert "Which?" in preview and "missing_think" in preview
    assert "What is 1700 + 1701?" in row_preview_markdown(report, 1701)
    assert "rows run from 1 to 3000" in row_preview_markdown(report, 4000)


def test_fixes_and_the_export_stream_and_keep_every_row(tmp_path, small_blocks):
    rows = [good(index % 500) for index in range(1200)]
    rows[3] = {"query": "Raw", "response": "steps\n</think>\n\n7", "source": "amc"}
    report = validate(str(write_jsonl_rows(tmp_path / "rows.jsonl", rows)), lengths=False)
    result = apply_fixes(report, {"repair_unopened", "drop_duplicates", "drop_errors"})
    # 500 distinct rows and the repaired one (row 504 repeats nothing now: row 4 was replaced)
    assert len(result.dataset.records) == 501 and isinstance(result.dataset.records, RecordStore)
    assert result.changed["repair_unopened"] == 1 and result.changed["drop_duplicates"] == 699
    assert len(report.dataset.records) == 1200  # the checked set is untouched
    out = tmp_path / "clean.jsonl"
    with open(out, "wb") as handle:
        written, left_out = write_jsonl(result.dataset, handle)
    assert (written, left_out) == (501, 0)
    lines = out.read_bytes().splitlines()
    assert len(lines) == 501 and json.loads(lines[3])["source"] == "amc"
    assert out.read_bytes() == export_jsonl(result.dataset)[0]
    saved_result, saved = fix_and_save(report, {"drop_duplicates"}, folder=tmp_path / "exports")
    assert len(saved.read_bytes().splitlines()) == len(saved_result.dataset.records) == 501


def test_a_checker_fed_by_hand_and_a_dataset_built_in_code_agree():
    records = records_of(10) + [Record(11, [("user", "q1"), ("assistant", REPLY.format(a=1, b=1, s=2))])]
    checker = RowChecker()
    checker(records[:4], "line")
    checker(records[4:], "line")
    by_hand = check_dataset(Dataset("rows.jsonl", "jsonl", None, records), checked=checker)
    built = check_dataset(Dataset("rows.jsonl", "jsonl", None, records))
    assert [issue.to_dict() for issue in by_hand.issues] == [issue.to_dict() for issue in built.issues]
    assert by_hand.summary == {"duplicate": 1} and dict(by_hand.duplicates) == {11: 1}
