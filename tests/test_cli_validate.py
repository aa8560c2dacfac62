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
    code, out, _ = run(BROKEN, "--json", "--model", "demo")
    report = json.loads(out)
    assert code == 1
    assert set(report) == {"path", "format", "mapping", "alternatives", "rows", "valid_rows", "summary", "issues", "lengths",
                           "prepared"}
    assert report["format"] == "conversation" and report["rows"] == 27
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


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


MEDICAL = [
    {"Question": "A 45-year-old has chest pain on exertion. First test?", "Complex_CoT": "Exertional pain suggests "
     "angina; the first test is a resting ECG.", "Response": "A resting 12-lead ECG.", "id": 1},
    {"Question": "Which vitamin deficiency causes scurvy?", "Complex_CoT": "Scurvy comes from a lack of vitamin C, "
     "needed for collagen.", "Response": "Vitamin C.", "id": 2},
    {"Question": "Which vitamin deficiency causes scurvy?", "Complex_CoT": "Scurvy comes from a lack of vitamin C, "
     "needed for collagen.", "Response": "Vitamin C.", "id": 3},
    {"Question": "Broken row", "Complex_CoT": "", "Response": "No reasoning here.", "id": 4},
]


@pytest.mark.parametrize("layout", ["messages", "conversation"])
def test_export_writes_the_normalized_rows_left_after_the_fixes(tmp_path, layout):
    source = write_rows(tmp_path / "medical.jsonl", MEDICAL)
    out = tmp_path / "clean.jsonl"
    code, stdout, _ = run(source, "--json", "--no-lengths", "--export", out, "--fix", "drop_duplicates",
                          "--layout", layout)
    report = json.loads(stdout)
    assert code == 1  # the report is about the input, which has a row with an error
    assert report["mapping"]["layout"] == "reasoning_field"
    assert (report["mapping"]["prompt"], report["mapping"]["reasoning"], report["mapping"]["answer"]) == (
        "Question", "Complex_CoT", "Response")
    assert report["export"]["rows_written"] == 2 and report["export"]["changed"]["drop_duplicates"] == 1
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [1, 2]  # the source's other fields kept, error and duplicate rows not
    assert rows[0][layout] == [
        {"role": "user", "content": MEDICAL[0]["Question"]},
        {"role": "assistant", "content": f"<think>\n{MEDICAL[0]['Complex_CoT']}\n</think>\n\n{MEDICAL[0]['Response']}"}]
    # The export reads back as a clean set in the layout it was written in.
    code, stdout, _ = run(out, "--json", "--no-lengths")
    again = json.loads(stdout)
    assert code == 0 and again["format"] == layout and again["valid_rows"] == 2


def test_export_keeps_the_inputs_own_layout_unless_told(tmp_path):
    out = tmp_path / "out.jsonl"
    code, _, _ = run(BROKEN, "--no-lengths", "--export", out, "--fix", "drop_duplicates")
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0]).keys() >= {"conversation"}
    code, _, _ = run(BROKEN, "--no-lengths", "--export", out, "--layout", "messages")
    assert "messages" in json.loads(out.read_text(encoding="utf-8").splitlines()[0])


def test_export_keeps_a_top_level_system_prompt(tmp_path):
    row = {"system": "Think step by step.", "query": "What is 2 + 2?",
           "response": "<think>\n2 + 2 = 4.\n</think>\n\n4"}
    source, out = write_rows(tmp_path / "s.jsonl", [row]), tmp_path / "out.jsonl"
    code, _, _ = run(source, "--no-lengths", "--export", out)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0 and exported["messages"][0] == {"role": "system", "content": "Think step by step."}


@pytest.mark.parametrize("args,message", [
    (["--fix", "drop_duplicates"], "add --export"),
    (["--export", "{tmp}/out.jsonl", "--fix", "nonsense"], "unknown fix"),
    (["--export", "{tmp}/out.jsonl", "--fix", "drop_truncated", "--no-lengths"], "needs token lengths"),
    (["--export", "{tmp}/out.jsonl", "--fix", "drop_cut_reasoning", "--no-lengths"], "drop_cut_reasoning needs token"),
    (["--export", "{tmp}/no/such/folder/out.jsonl"], "does not exist"),
    (["--export", "{source}"], "is the input file"),
])
def test_export_refusals_name_the_fix(tmp_path, args, message):
    source = write_rows(tmp_path / "in.jsonl", MEDICAL[:2])
    before = source.read_bytes()
    args = [str(arg).format(tmp=tmp_path, source=source) for arg in args]
    code, _, err = run(source, *args, *([] if "--no-lengths" in args else ["--no-lengths"]))
    assert code == 2 and message in err and "Traceback" not in err
    assert source.read_bytes() == before  # the input is never touched


def test_help_lists_the_mapping_keys_and_fixes():
    code, out, _ = run("--help")
    assert code == 0
    for word in ("prompt", "reasoning", "answer", "system", "turns", "--export", "drop_duplicates", "convert_foreign"):
        assert word in out, word


def test_lengths_say_which_tokenizer_measured():
    code, out, _ = run(CLEAN, "--json", "--model", "demo")
    lengths = json.loads(out)["lengths"]
    assert code == 0 and lengths["tokenizer"].startswith("demo") and lengths["exact"] is True
