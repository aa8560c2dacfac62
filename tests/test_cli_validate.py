"""`python -m studio validate`: the JSON contract and the exit codes scripts rely on."""

import json
import os
import subprocess
import sys

import pytest

from studio.data.checks import CODES
from studio.config import PROJECT_ROOT, SAMPLES_DIR

BROKEN = SAMPLES_DIR / "broken-sample.jsonl"
CLEAN = SAMPLES_DIR / "clean-sample.jsonl"


def run(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.run([sys.executable, "-m", "studio", "validate", *map(str, args)], capture_output=True,
                             text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
    return process.returncode, process.stdout, process.stderr


def test_json_contract_on_the_broken_sample():
    code, out, _ = run(BROKEN, "--json")
    report = json.loads(out)
    assert code == 1
    assert set(report) == {"path", "format", "mapping", "alternatives", "rows", "valid_rows", "summary", "issues", "lengths"}
    assert report["format"] == "conversation" and report["rows"] == 21
    assert set(report["summary"]) == set(CODES)
    assert sum(report["summary"].values()) == len(report["issues"])
    for issue in report["issues"]:
        assert set(issue) == {"row", "code", "severity", "message"}
        assert issue["severity"] == CODES[issue["code"]].severity
    parse_error = next(issue for issue in report["issues"] if issue["code"] == "parse_error")
    assert parse_error["row"] == 2  # the 1-based line of the file
    lengths = report["lengths"]
    assert lengths["max_length"] == 4096 and lengths["over_max_length"] >= 1
    assert {"p50", "p90", "p99", "max", "histogram"} <= set(lengths)


def test_clean_sample_exits_zero():
    code, out, _ = run(CLEAN, "--json", "--max-length", "4096")
    report = json.loads(out)
    assert code == 0 and report["valid_rows"] == report["rows"] and report["issues"] == []


def test_warnings_only_exit_zero(tmp_path):
    path = tmp_path / "warn.jsonl"
    path.write_text('{"query": "1+1?", "response": "1 + 1 = 2.\\n</think>\\n\\n2"}\n')
    code, out, _ = run(path, "--json", "--no-lengths")
    report = json.loads(out)
    assert code == 0 and report["summary"] == {"unopened_think": 1} and report["lengths"] is None


def test_records_are_numbered_by_record_outside_jsonl(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('query,response\n"ok?","<think>x</think>y"\n"bad?","no reasoning"\n')
    code, out, _ = run(path, "--json", "--no-lengths")
    assert code == 1 and json.loads(out)["issues"][0]["row"] == 2


@pytest.mark.parametrize("args,message", [
    (["missing.jsonl"], "no such file"),
    (["README.md"], "unsupported file type"),
    ([BROKEN, "--model", "/nonexistent/model"], "not `demo`"),
    ([BROKEN, "--max-length", "0"], "positive"),
    ([BROKEN, "--format", "nonsense"], "unknown format"),
    (["someone/dataset"], "HF_HUB_OFFLINE"),
])
def test_unreadable_input_exits_two_with_the_cause(args, message):
    code, out, err = run(*args)
    assert code == 2 and message in err and "Traceback" not in err
    code, out, _ = run(*args, "--json")
    assert code == 2 and message in json.loads(out)["error"]


def test_readable_summary_without_json():
    code, out, _ = run(BROKEN, "--no-lengths")
    assert code == 1
    assert "format: conversation" in out and "missing_think" in out and "line 6" in out


def test_field_overrides(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text('{"q": "1+1?", "a": "<think>\\n1 + 1 = 2.\\n</think>\\n\\n2"}\n')
    code, out, _ = run(path, "--json", "--no-lengths")
    assert code == 1 and json.loads(out)["summary"] == {"unknown_format": 1}
    code, out, _ = run(path, "--json", "--no-lengths", "--format", "query_response",
                       "--field", "prompt=q", "--field", "response=a")
    assert code == 0 and json.loads(out)["format"] == "query_response"
