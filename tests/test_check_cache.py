"""Checks of the same bytes with the same settings are done once, for any number of sessions asking at once."""

import threading
import time

from studio.config import SAMPLES_DIR
from studio.data import check_cache, validate as validate_module


def test_concurrent_requests_for_the_same_content_share_one_check(tmp_path, monkeypatch):
    calls = []
    real = validate_module.validate

    def slow_validate(source, **settings):
        calls.append(source)
        time.sleep(0.3)  # long enough that every request arrives while the first one runs
        return real(source, **settings)

    monkeypatch.setattr(check_cache, "validate", slow_validate)
    copies = []
    for index in range(6):
        copy = tmp_path / f"visitor-{index}.jsonl"
        copy.write_bytes((SAMPLES_DIR / "clean-sample.jsonl").read_bytes())
        copies.append(str(copy))
    cache = check_cache.CheckCache()
    reports = [None] * len(copies)

    def ask(index):
        reports[index] = cache.validate(copies[index], lengths=False)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(copies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert [report.dataset.source for report in reports] == copies  # each named for its own upload
    assert len({id(report) for report in reports}) == len(copies)  # each session's report is its own to free
    assert len({id(report.dataset.records) for report in reports}) == 1  # the rows are held once
    assert all(report.valid_rows == reports[0].valid_rows == reports[0].rows for report in reports)


def test_other_settings_or_content_are_checked_again_and_nothing_is_kept_alive(tmp_path, monkeypatch):
    calls = []
    real = validate_module.validate
    monkeypatch.setattr(check_cache, "validate", lambda source, **settings: calls.append(source) or real(source, **settings))
    path = tmp_path / "data.jsonl"
    path.write_bytes((SAMPLES_DIR / "clean-sample.jsonl").read_bytes())
    cache = check_cache.CheckCache()
    first = cache.validate(str(path), lengths=False)
    cache.validate(str(path), lengths=False)
    assert len(calls) == 1  # reused while a session holds the report
    cache.validate(str(path), lengths=False, max_length=64)
    assert len(calls) == 2  # other settings: checked again
    path.write_bytes((SAMPLES_DIR / "broken-sample.jsonl").read_bytes())
    assert cache.validate(str(path), lengths=False).error_rows  # other bytes under the same name: checked again
    del first
    import gc

    gc.collect()
    assert len(cache) <= 2  # only reports still held somewhere stay reachable


def test_failures_are_not_kept_each_request_gets_the_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    cache = check_cache.CheckCache()
    for _ in range(2):
        try:
            cache.validate(str(bad), lengths=False)
        except Exception as error:
            assert "not valid JSON" in str(error)
        else:
            raise AssertionError("an unreadable file must raise")


def test_a_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.jsonl"
    path.write_bytes((SAMPLES_DIR / "clean-sample.jsonl").read_bytes())
    first = check_cache.content_key(str(path))
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    assert check_cache.content_key(str(path)) == first and reads == []  # unchanged: not read again
    monkeypatch.undo()
    data = bytearray(path.read_bytes())
    data[-2:-1] = b" "  # the same size, other bytes: a newer modification time
    time.sleep(0.01)
    path.write_bytes(bytes(data))
    assert check_cache.content_key(str(path)) != first
