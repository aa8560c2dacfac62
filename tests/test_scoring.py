"""How batch compare judges a reply (studio.chat.scoring): format, the answer it takes out, the reference match."""

import re

import pytest

from studio.chat.compare import CompareResult, CompareRow, Prompt
from studio.chat.generate import Reply
from studio.chat.scoring import (
    DEMO_PATTERN, check_answer, check_format, compile_pattern, describe_pattern, extract_answer, last_boxed,
    same_answer,
)


@pytest.mark.parametrize("text, problem", [
    ("Add them.\n</think>\n\nThe answer is \\boxed{9}.", None),
    ("<think>\nAdd them.\n</think>\n\n9", None),  # a template that leaves the opening to the model
    ("Add them. 4 + 5 = 9", "never closed"),
    ("Add them.\n</think>\n\n   ", "no answer after </think>"),
    ("Add them.\n</think>\n\n9 apples.\n</think>", "stray </think> tag in the answer"),
    ("Add them.\n</think>\n\n<think>\nagain", "stray <think> tag in the answer"),
    ("Add them.\n</think>\n\n9 </think", "stray </think tag in the answer"),  # broken, cut before its >
    ("Add <think> them.\n</think>\n\n9", "second <think> tag inside the reasoning"),
])
def test_the_format_check_names_what_breaks_r1s_shape(text, problem):
    check = check_format(text)
    assert check.ok is (problem is None)
    assert (check.problem is None) if problem is None else (problem in check.problem)


def test_the_answer_is_the_last_complete_box_and_an_unclosed_one_is_none():
    assert last_boxed("first \\boxed{3}, then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{9} and later \\boxed{1") == "9"  # the unclosed one is not an answer
    assert last_boxed("the answer is \\boxed{18") is None
    assert extract_answer("so \\boxed{ 18 }.") == "18"
    assert extract_answer("Answer: 42", re.compile(r"Answer: (\d+)")) == "42"  # the pattern's first group
    assert extract_answer("Answer: 42", re.compile(r"\d+")) == "42"  # no group: the whole match
    assert extract_answer("18 apples, not 20") is None  # no box and no pattern: nothing to compare


@pytest.mark.parametrize("extracted, reference, same", [
    ("18.0", "18", True), ("$18$", "18", True), ("18.", "18", True), ("\\text{18}", "18", True),
    ("1,000", "1000", True), (" 1,234,567 ", "1234567", True), ("0.5", ".5", True),
    ("\\text{Paris}.", "paris", True), ("18", "180", False), ("118", "18", False),
    ("9 apples", "9", False),  # no substring search: an answer with words is not the number
    ("x = 3", "3", False),
])
def test_answers_are_compared_after_normalising_never_by_substring(extracted, reference, same):
    assert same_answer(extracted, reference) is same


def test_the_reference_match_uses_the_extracted_answer():
    assert check_answer("4 + 5 = \\boxed{9}", "9").matches is True
    assert check_answer("I think 9 but the answer is \\boxed{8}", "9").matches is False
    assert check_answer("The answer is 9.", "9").matches is False  # no box, no pattern: no answer found
    assert check_answer("The answer is \\boxed{9", "9").matches is False  # unclosed
    assert check_answer("\\boxed{9}", None).matches is None
    # Before, "the reference appears in the answer" counted: "Paris" matched "Paris is not the capital of Spain".
    assert check_answer("Paris is not it; \\boxed{Madrid}", "Paris").matches is False


def test_a_bad_pattern_is_quoted_as_typed_and_says_what_to_do():
    typed = r"\boxed{(\d+"
    with pytest.raises(ValueError) as error:
        compile_pattern(typed)
    message = str(error.value)
    assert f"“{typed}”" in message and "\\\\" not in message and "Answer pattern box" in message


def test_patterns_are_described_in_words():
    assert describe_pattern(DEMO_PATTERN) == "the final answer written inside `\\boxed{…}`"
    assert "first ( )" in describe_pattern(r"Answer: (\d+)")
    assert describe_pattern(None) == "no answer pattern"


def test_compare_rows_and_summary_use_the_strict_checks():
    def reply(text):
        return Reply(text=text, tokens=10, finished=True)

    rows = [CompareRow(Prompt("What is 4 + 5?", "9"), {"base": reply("sum\n</think>\n\n9 </think>"),
                                                       "lora": reply("sum\n</think>\n\n\\boxed{9.0}")}),
            CompareRow(Prompt("What is 9 + 9?", "18"), {"base": reply("sum\n</think>\n\nIt is 118, not 18."),
                                                        "lora": reply("sum\n</think>\n\n\\boxed{18")})]
    result = CompareResult(rows, DEMO_PATTERN).to_json()
    base, lora = result["rows"][0]["base"], result["rows"][0]["lora"]
    assert base["well_formed"] is False and "stray" in base["format_problem"]
    assert lora["well_formed"] is True and lora["extracted_answer"] == "9.0" and lora["matches_reference"] is True
    second = result["rows"][1]
    assert second["base"]["matches_reference"] is False  # "18" appears in it, but no answer was given
    assert second["lora"]["matches_reference"] is False and second["lora"]["shows_pattern"] is False  # unclosed
    summary = result["summary"]
    assert summary["base"]["format_compliance"] == 50.0 and summary["lora"]["answer_match"] == 50.0
    assert "</think>" in summary["measures"]["format_compliance"] and "18.0 = 18" in summary["measures"]["answer_match"]
