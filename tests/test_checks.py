"""Each issue code on crafted rows: the code fires on a row that has the problem and not on its fixed twin."""

import json

import pytest

from studio.config import FOREIGN_THINK_TAGS, SOLUTION_MARKERS
from studio.data.checks import (CODES, ERROR, FIXES, WARNING, apply_fixes, check_dataset, repair_reply,
                                 trainable_messages)
from studio.data.export import export_jsonl
from studio.data.records import load_dataset
from studio.data.template import training_parts

GOOD_REPLY = "<think>\n3 + 5 = 8.\n</think>\n\nThe answer is 8."
REASONING, ANSWER = "<think>\n3 + 5 = 8.\n</think>", "\n\nThe answer is 8."  # GOOD_REPLY in two
# Foreign reasoning pairs seen in public R1 data; each must convert to GOOD_REPLY.
FOREIGN_PAIRS = [("<|begin_of_thought|>", "<|end_of_thought|>"), ("<thinking>", "</thinking>"),
                 ("<reasoning>", "</reasoning>"), ("<thought>", "</thought>"), ("◁think▷", "◁/think▷"),
                 ("<seed:think>", "</seed:think>"), ("[THINK]", "[/THINK]")]
BESPOKE_REPLY = ("<|begin_of_thought|>\n\n3 + 5 = 8.\n\n<|end_of_thought|>\n\n"
                 "<|begin_of_solution|>\n\nThe answer is 8.\n\n<|end_of_solution|>")


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
    ("multiple_think", single(reply="3 + 5 = 8.\n</think>\n\n8 <think>check</think> 8"),
     single()),
    ("empty_think", single(reply="<think>\n \n</think>\n\nThe answer is 8."), single()),
    ("think_outside_assistant", single(prompt="Use <think> tags. What is 3 + 5?"), single()),
    ("think_outside_assistant",
     conversation(("system", "Reason in <think></think>."), ("user", "3 + 5?"), ("assistant", GOOD_REPLY)),
     conversation(("system", "Reason step by step."), ("user", "3 + 5?"), ("assistant", GOOD_REPLY))),
    ("foreign_think_tags", single(reply="<|begin_of_thought|>\n3 + 5 = 8\n<|end_of_thought|>\n\n8"), single()),
    *[("foreign_think_tags", single(reply=f"{opening}\n3 + 5 = 8.\n{closing}{ANSWER}"), single())
      for opening, closing in FOREIGN_PAIRS],
    ("foreign_think_tags", single(reply=BESPOKE_REPLY), single()),
    # text before the first <think>: that <think> would be trained inside the reasoning
    ("text_before_think", single(reply="This" + GOOD_REPLY), single(reply=" \n\t" + GOOD_REPLY)),
    ("text_before_think", single(reply="## Solution\n\n" + GOOD_REPLY), single()),
    ("text_before_think", single(reply="Sure! " + GOOD_REPLY), single()),
    ("text_before_think", single(reply="Sure! <reasoning>\n3 + 5 = 8.\n</reasoning>" + ANSWER), single()),
    # a second </think>, in both orders, and one left in the answer after a good block
    ("stray_close_think", single(reply=REASONING + "</think>" + ANSWER), single()),
    ("stray_close_think", single(reply="3 + 5 = 8.\n</think></think>" + ANSWER), single()),
    ("stray_close_think", single(reply="3 + 5 = 8.\n</think>\n\nThe answer</think> is 8."), single()),
    ("stray_close_think", single(reply=GOOD_REPLY + " </think>"), single()),
    ("stray_close_think", single(reply="<thinking>\n3 + 5 = 8.\n</thinking></thinking>" + ANSWER), single()),
    # a reasoning or solution marker left in the answer
    ("tag_in_answer", single(reply=GOOD_REPLY + "\n<think>"), single()),
    ("tag_in_answer", single(reply=GOOD_REPLY + " <thinking>"), single()),
    ("tag_in_answer", single(reply=GOOD_REPLY + "<|end_of_thought|>"), single()),
    ("tag_in_answer", single(reply=GOOD_REPLY + "\n◁/think▷"), single()),
    ("tag_in_answer", single(reply=REASONING + "\n\n<|begin_of_solution|>\nThe answer is 8.\n<|end_of_solution|>"),
     single()),
    ("tag_in_answer", single(reply=REASONING + "\n\nThe answer is 8.<|end_of_solution|>"), single()),
    ("tag_in_answer", single(reply="3 + 5 = 8.\n</think>\n\n<|begin_of_solution|>The answer is 8.<|end_of_solution|>"),
     single()),
    ("tag_in_answer", single(reply="<thinking>\n3 + 5 = 8.\n</thinking>\n\nThe answer is 8. <reasoning>"), single()),
    # solution markers but no reasoning at all: nothing to convert
    ("missing_think", single(reply="<|begin_of_solution|>\nThe answer is 8.\n<|end_of_solution|>"), single()),
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


def test_tags_that_would_be_trained_as_text_are_errors():
    for code in ("text_before_think", "stray_close_think", "tag_in_answer", "multiple_think"):
        assert CODES[code].severity == ERROR, code
    for code in ("unopened_think", "foreign_think_tags", "think_outside_assistant"):  # repairable or harmless
        assert CODES[code].severity == WARNING, code


def check_cut_rows(tmp_path, demo_tokenizer):
    """Three rows checked at max_length 256: row 1 cut inside its reasoning, row 2 inside its answer, row 3 whole."""
    long_reasoning = "<think>\n" + "2 + 2 = 4. " * 400 + "\n</think>\n\nThe answer is 4."
    long_answer = "<think>\nshort\n</think>\n\n" + "The answer is 4. " * 400
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [single(reply=long_reasoning),
                                                           single(reply=long_answer), single()]))
    return check_dataset(load_dataset(str(path)), tokenizer=demo_tokenizer, max_length=256)


def test_truncated_says_where_the_cut_falls(tmp_path, demo_tokenizer):
    report = check_cut_rows(tmp_path, demo_tokenizer)
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
    assert repair_reply(BESPOKE_REPLY) == "<think>\n\n3 + 5 = 8.\n\n</think>\n\nThe answer is 8."
    assert repair_reply("a<|end_of_thought|>b") == "<think>\na</think>b"
    solution = REASONING + "\n\n<|begin_of_solution|>\nThe answer is 8.\n<|end_of_solution|>"
    assert repair_reply(solution) == GOOD_REPLY
    assert repair_reply(solution, convert_foreign=False) == solution
    # the solution markers go from the answer only, foreign tags are left alone beside <think>
    assert repair_reply("<think>x <|begin_of_solution|></think>y") == "<think>x <|begin_of_solution|></think>y"
    assert repair_reply(GOOD_REPLY + "<thinking>") == GOOD_REPLY + "<thinking>"


@pytest.mark.parametrize("opening,closing", FOREIGN_PAIRS, ids=[pair[0] for pair in FOREIGN_PAIRS])
def test_each_foreign_pair_converts_to_a_clean_row(tmp_path, opening, closing):
    assert (opening, closing) in FOREIGN_THINK_TAGS
    report = check_rows(tmp_path, [single(reply=f"{opening}\n3 + 5 = 8.\n{closing}{ANSWER}")])
    assert codes_of(report) == ["foreign_think_tags"] and "'convert foreign tags'" in report.issues[0].message
    result = apply_fixes(report, {"convert_foreign"})
    assert result.report.issues == [] and result.changed["convert_foreign"] == 1
    assert result.dataset.records[0].messages[-1] == ("assistant", GOOD_REPLY)


def test_bespoke_and_openthoughts_rows_are_clean_after_conversion(tmp_path):
    openthoughts = REASONING + "\n\n<|begin_of_solution|>\n\nThe answer is 8.\n\n<|end_of_solution|>"
    cohere = "<|START_THINKING|>\n3 + 5 = 8.\n<|END_THINKING|>\n<|START_RESPONSE|>The answer is 8.<|END_RESPONSE|>"
    rows = [single(reply=BESPOKE_REPLY), single(prompt="b?", reply=BESPOKE_REPLY.replace("8", "9")),
            single(prompt="c?", reply=openthoughts), single(prompt="d?", reply=cohere)]
    report = check_rows(tmp_path, rows)
    assert [codes_of(report, row) for row in (1, 2, 3, 4)] == [
        ["foreign_think_tags"], ["foreign_think_tags"], ["tag_in_answer"], ["foreign_think_tags"]]
    assert "solution markers" in report.issues[0].message
    result = apply_fixes(report, {"convert_foreign"})
    assert result.report.issues == [] and result.changed["convert_foreign"] == 4
    markers = [tag for pair in FOREIGN_THINK_TAGS + SOLUTION_MARKERS for tag in pair]
    for record in result.dataset.records:
        reply = record.messages[-1][1]
        reasoning, answer = reply.split("</think>")
        assert reasoning.startswith("<think>") and answer.strip().startswith("The answer is")
        assert not any(tag in reply for tag in markers), reply


def test_converted_rows_are_clean_only_when_they_really_are(tmp_path):
    rows = [single(reply="<thinking>\n3 + 5 = 8.\n</thinking>" + ANSWER + " <reasoning>"),  # marker stays
            single(prompt="b?", reply="<thinking>\n3 + 5 = 8.\n</thinking>\n\n</thinking>8"),  # second close
            single(prompt="c?", reply="Sure! <reasoning>\n3 + 5 = 8.\n</reasoning>" + ANSWER),  # text before
            single(prompt="d?", reply="<|begin_of_thought|>\n3 + 5 = 8.\n<|end_of_thought|>\n\n"
                                      "<|begin_of_solution|><|end_of_solution|>"),  # no answer left
            single(prompt="e?", reply="The <thinking> tag opens the reasoning.")]  # no reasoning at all
    report = check_rows(tmp_path, rows)
    expected = [["foreign_think_tags", "tag_in_answer"], ["foreign_think_tags", "stray_close_think"],
                ["foreign_think_tags", "text_before_think"], ["foreign_think_tags", "empty_answer"],
                ["foreign_think_tags", "text_before_think", "unclosed_think"]]
    assert [codes_of(report, row) for row in range(1, 6)] == expected
    assert report.error_rows == {1, 2, 3, 4, 5}  # training would convert them and train the leftovers
    result = apply_fixes(report, {"convert_foreign"})
    assert [codes_of(result.report, row) for row in range(1, 6)] == [codes[1:] for codes in expected]


# Rows whose messages may name a fix, beyond the CASES table: conversion and repair leading to other problems.
HINT_REPLIES = [
    "a<|end_of_thought|>b", "<thinking>a</thinking>b</thinking>c", "Sure <reasoning>a</reasoning>b",
    "a</think>b</think>c", "a</think>b<think>c</think>d", "a</think>b<|end_of_solution|>",
    "<think>a</think>b<|begin_of_solution|> <thinking>", "<think>x <|begin_of_solution|></think>y",
    "<|begin_of_thought|>a<|end_of_thought|><|begin_of_solution|>b<|end_of_solution|><|end_of_thought|>",
    "<|begin_of_solution|>b<|end_of_solution|>", "<think>a</think></think>b", "[THINK]a[/THINK]",
    "<|begin_of_thought|>a", "<reasoning>a<reasoning>b</reasoning>c</reasoning>d",
]
FIX_HINTS = {"convert_foreign": "'convert foreign tags'", "repair_unopened": "'repair <think>'"}


def test_a_fix_is_named_only_where_it_changes_the_row(tmp_path):
    rows = [bad for _, bad, _ in CASES] + [single(prompt=f"q{n}?", reply=reply) for n, reply in enumerate(HINT_REPLIES)]
    report = check_rows(tmp_path, rows)
    replies = {record.number: record.messages[-1][1] for record in report.dataset.records}
    naming = set()
    for issue in report.issues:
        named = [fix for fix, hint in FIX_HINTS.items() if hint in issue.message]
        reply = replies[issue.row]
        if "convert_foreign" in named:  # applied first, as apply_fixes does
            converted = repair_reply(reply, convert_foreign=True, repair_unopened=False)
            assert converted != reply, issue
            reply = converted
        if "repair_unopened" in named:
            assert repair_reply(reply, convert_foreign=False, repair_unopened=True) != reply, issue
        if named:
            naming.add(issue.code)
    assert {"foreign_think_tags", "unopened_think", "tag_in_answer"} <= naming
    assert set(FIX_HINTS) <= set(FIXES)


def test_the_fix_is_not_offered_where_it_changes_nothing(tmp_path):
    rows = [single(reply=REASONING + "</think>" + ANSWER),  # was unopened_think, whose repair changed nothing
            single(prompt="b?", reply=GOOD_REPLY + " <thinking>"),  # a foreign tag in the answer: no conversion
            single(prompt="c?", reply="<|begin_of_solution|>The answer is 8.<|end_of_solution|>")]
    report = check_rows(tmp_path, rows)
    assert [codes_of(report, row) for row in (1, 2, 3)] == [["stray_close_think"], ["tag_in_answer"], ["missing_think"]]
    for issue in report.issues:
        assert not any(hint in issue.message for hint in FIX_HINTS.values()), issue
    for record in report.dataset.records:
        assert repair_reply(record.messages[-1][1]) == record.messages[-1][1]
    result = apply_fixes(report, {"convert_foreign", "repair_unopened"})
    assert result.changed["convert_foreign"] == result.changed["repair_unopened"] == 0


def test_rows_without_errors_train_no_tag_in_the_answer(tmp_path, demo_tokenizer):
    rows = [bad for _, bad, _ in CASES] + [single(prompt=f"q{n}?", reply=reply) for n, reply in enumerate(HINT_REPLIES)]
    report = check_rows(tmp_path, rows)
    markers = ["<think>", "</think>"] + [tag for pair in FOREIGN_THINK_TAGS + SOLUTION_MARKERS for tag in pair]
    trained = 0
    for record in report.dataset.records:
        if record.number in report.error_rows:
            continue
        _, reasoning, answer = training_parts(demo_tokenizer, trainable_messages(record.messages))
        assert not any(tag in answer for tag in markers), (record.number, answer)
        assert "<think>" not in reasoning.lstrip().removeprefix("<think>") and reasoning.count("</think>") == 1
        trained += 1
    assert trained >= len(FOREIGN_PAIRS) + 3


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


def test_the_cut_before_the_answer_is_dropped_and_the_cut_answer_kept(tmp_path, demo_tokenizer):
    report = check_cut_rows(tmp_path, demo_tokenizer)
    assert report.lengths.cut_before_answer() == {1}
    assert report.lengths.summary()["cut_before_answer"] == 1
    result = apply_fixes(report, {"drop_cut_reasoning"}, tokenizer=demo_tokenizer, max_length=256)
    assert [record.number for record in result.dataset.records] == [2, 3]  # the cut answer still trains its start
    assert result.changed["drop_cut_reasoning"] == 1


def test_length_fixes_need_measured_lengths(tmp_path):
    from studio.data.validate import clean, fixes_possible, validate

    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(single()) + "\n")
    report = validate(str(path), lengths=False)
    assert fixes_possible(report, {"drop_duplicates", "drop_cut_reasoning"}) == ({"drop_duplicates"},
                                                                                 ["drop_cut_reasoning"])
    with pytest.raises(ValueError, match="drop_cut_reasoning fix needs token lengths"):
        clean(report, {"drop_cut_reasoning"})


def test_cleaned_sets_are_listed_newest_first(tmp_path):
    import os

    from studio.data.validate import cleaned_sets

    assert cleaned_sets(tmp_path / "not-there") == []
    older, newer = tmp_path / "a-clean-20260101-000000.jsonl", tmp_path / "b-clean-20250101-000000.jsonl"
    for path, when in ((older, 1_000_000), (newer, 2_000_000)):
        path.write_text("{}\n")
        os.utime(path, (when, when))
    (tmp_path / "upload.jsonl").write_text("{}\n")  # not a cleaned set
    assert cleaned_sets(tmp_path) == [newer, older]  # by when it was written, not by the name


def test_the_check_length_is_the_one_training_uses():
    from studio.data.validate import training_max_length
    from studio.train.job import DEMO_PRESET, PRESETS

    assert training_max_length("demo") == PRESETS[DEMO_PRESET]["max_length"] == 512
    assert training_max_length("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") >= 4096
    assert training_max_length("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "qlora") >= 4096


def test_an_empty_file_is_named_by_its_own_name(tmp_path):
    from studio.data.readers import DatasetUnreadable

    folder = tmp_path / "gradio-upload-3f9a"
    folder.mkdir()
    (folder / "mine.jsonl").write_text("")
    with pytest.raises(DatasetUnreadable) as error:
        load_dataset(str(folder / "mine.jsonl"))
    assert str(error.value).startswith("mine.jsonl holds no rows") and "gradio-upload" not in str(error.value)


@pytest.mark.parametrize("layout, kept", [("messages", "messages"), ("conversation", "conversation"),
                                          ("alpaca", "messages"), (None, "messages")])
def test_the_export_keeps_the_input_layout(layout, kept):
    from studio.data.export import style_for, style_note

    assert style_for(layout) == kept
    assert ("Kept as your file's layout" in style_note(layout)) == (layout == kept)
