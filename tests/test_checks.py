"""Each issue code on crafted rows: the code fires on a row that has the problem and not on its fixed twin."""

import json

import pytest

from studio.data.checks import CODES, ERROR, WARNING, apply_fixes, check_dataset, repair_reply
from studio.data.export import export_jsonl
from studio.data.records import load_dataset

GOOD_REPLY = "<think>\n3 + 5 = 8.\n</think>\n\nThe answer is 8."


def conversation(*turns):
    return {"conversation": [{"role": role, "content": content} for role, content in turns]}


def single(prompt="What is 3 + 5?", reply=GOOD_REPLY):
    return conversation(("user", prompt), ("assistant", reply))


def check_rows(tmp_path, rows, raw_lines=None):
    path = tmp_path / "rows.jsonl"
    lines = raw_lines or [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return check_dataset(load_dataset(str(path)))


def codes_of(report, row=1):
    return [issue.code for issue in report.issues if issue.row == row]


# (code, row with the problem, the same row without it)
CASES = [
    ("empty_prompt", single(prompt="  \n"), single()),
    ("empty_response", single(reply=" "), single()),
    ("missing_think", single(reply="The answer is 8."), single()),
    ("unclosed_think", single(reply="<think>\n3 + 5 = 8 and so on"), single()),
    ("nested_think", single(reply="<think>\n3 + <think>5</think> = 8\n</think>\n\n8"), single()),
    ("empty_answer", single(reply="<think>\n3 + 5 = 8.\n</think>\n\n  "), single()),
    ("bad_roles", conversation(("user", "a?"), ("user", "b?"), ("assistant", GOOD_REPLY)),
     conversation(("user", "a?"), ("assistant", GOOD_REPLY), ("user", "b?"), ("assistant", GOOD_REPLY))),
    ("bad_roles", conversation(("user", "a?"), ("assistant", GOOD_REPLY), ("user", "b?")),
     conversation(("system", "Be brief."), ("user", "a?"), ("assistant", GOOD_REPLY))),
    ("bad_roles", conversation(("user", "a?"), ("robot", GOOD_REPLY)), single()),
    ("bad_roles", conversation(("user", "a?"), ("system", "late"), ("assistant", GOOD_REPLY)), single()),
    ("unopened_think", single(reply="3 + 5 = 8.\n</think>\n\nThe answer is 8."), single()),
    ("multiple_think", single(reply="<think>\na\n</think>\n<think>\nb\n</think>\n\n8"), single()),
    ("empty_think", single(reply="<think>\n \n</think>\n\nThe answer is 8."), single()),
    ("think_outside_assistant", single(prompt="Use <think> tags. What is 3 + 5?"), single()),
    ("think_outside_assistant",
     conversation(("system", "Reason in <think></think>."), ("user", "3 + 5?"), ("assistant", GOOD_REPLY)),
     conversation(("system", "Reason step by step."), ("user", "3 + 5?"), ("assistant", GOOD_REPLY))),
    ("foreign_think_tags", single(reply="<|begin_of_thought|>\n3 + 5 = 8\n<|end_of_thought|>\n\n8"), single()),
]


@pytest.mark.parametrize("code,bad,good", CASES, ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)])
def test_code_fires_on_the_problem_and_not_on_the_fixed_row(tmp_path, code, bad, good):
    report = check_rows(tmp_path, [bad, good])
    assert code in codes_of(report, 1), report.issues
    assert codes_of(report, 2) == [], report.issues
    issue = next(issue for issue in report.issues if issue.code == code)
    assert issue.severity == CODES[code].severity
    assert "line 1" in issue.message  # says where


def test_parse_error_keeps_the_other_rows(tmp_path):
    lines = [json.dumps(single()), '{"conversation": [', json.dumps(single(prompt="other?"))]
    report = check_rows(tmp_path, None, raw_lines=lines)
    assert report.rows == 3 and report.valid_rows == 2
    assert codes_of(report, 2) == ["parse_error"]
    assert "line 2" in report.issues[0].message and "column" in report.issues[0].message


def test_unknown_format_for_rows_that_fit_no_format(tmp_path):
    report = check_rows(tmp_path, [{"foo": 1, "bar": 2}])
    assert codes_of(report) == ["unknown_format"]
    assert "bar, foo" in report.issues[0].message


def test_unknown_format_for_a_row_that_breaks_the_detected_format(tmp_path):
    report = check_rows(tmp_path, [single(), single(prompt="b?"), {"conversation": "not a list"}])
    assert codes_of(report, 3) == ["unknown_format"]
    assert "must be a list" in report.issues[0].message


def test_duplicate_names_the_first_row(tmp_path):
    report = check_rows(tmp_path, [single(), single(prompt="other?"), single()])
    assert codes_of(report, 3) == ["duplicate"] and codes_of(report, 1) == []
    assert "line 1" in report.issues[0].message


def test_clean_rows_have_no_issues(tmp_path):
    rows = [single(prompt=f"What is {n} + 1?") for n in range(5)]
    rows.append(conversation(("system", "Be brief."), ("user", "a?"), ("assistant", GOOD_REPLY),
                             ("user", "b?"), ("assistant", GOOD_REPLY)))
    report = check_rows(tmp_path, rows)
    assert report.issues == [] and report.valid_rows == 6


def test_every_code_has_a_severity_and_a_reason():
    assert {info.severity for info in CODES.values()} == {ERROR, WARNING}
    assert all(info.why for info in CODES.values())


def test_truncated_says_where_the_cut_falls(tmp_path, demo_tokenizer):
    long_reasoning = "<think>\n" + "2 + 2 = 4. " * 400 + "\n</think>\n\nThe answer is 4."
    long_answer = "<think>\nshort\n</think>\n\n" + "The answer is 4. " * 400
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [single(reply=long_reasoning),
                                                           single(reply=long_answer), single()]))
    report = check_dataset(load_dataset(str(path)), tokenizer=demo_tokenizer, max_length=256)
    truncated = {issue.row: issue.message for issue in report.issues if issue.code == "truncated"}
    assert set(truncated) == {1, 2}
    assert "inside the reasoning" in truncated[1] and "inside the answer" in truncated[2]
    summary = report.lengths.summary()
    assert summary["over_max_length"] == 2 and summary["count"] == 3
    assert sum(summary["histogram"]["counts"]) == 3


def test_repair_reply():
    assert repair_reply("a\n</think>\n\nb") == "<think>\na\n</think>\n\nb"
    assert repair_reply("<|begin_of_thought|>a<|end_of_thought|>b") == "<think>a</think>b"
    assert repair_reply(GOOD_REPLY) == GOOD_REPLY


def test_fixes_leave_a_clean_set_and_keep_the_input(tmp_path):
    rows = [single(), single(reply="3 + 5 = 8.\n</think>\n\n8"),
            single(reply="<|begin_of_thought|>\nx\n<|end_of_thought|>\n\n8"),
            single(reply="no reasoning"), single()]
    report = check_rows(tmp_path, rows)
    result = apply_fixes(report, {"convert_foreign", "repair_unopened", "drop_errors", "drop_duplicates"})
    assert result.report.issues == []
    assert [record.number for record in result.dataset.records] == [1, 2, 3]
    assert result.changed["repair_unopened"] == 1 and result.changed["convert_foreign"] == 1
    assert result.changed["drop_errors"] == 1 and result.changed["drop_duplicates"] == 1
    assert len(report.dataset.records) == 5  # the original is untouched


@pytest.mark.parametrize("style", ["conversation", "messages"])
def test_export_round_trips(tmp_path, style):
    report = check_rows(tmp_path, [single(), single(prompt="b?")])
    out = tmp_path / f"clean-{style}.jsonl"
    data, left_out = export_jsonl(report.dataset, out, style=style)
    assert left_out == 0 and out.read_bytes() == data
    again = load_dataset(str(out))
    assert again.format == style
    assert [record.messages for record in again.records] == [record.messages for record in report.dataset.records]
