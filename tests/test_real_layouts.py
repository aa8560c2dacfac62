"""Real public R1 dataset layouts, a few rows each with their real field names: the mapping detection picks and
the normalized messages, reasoning kept. Then the runner-up, overrides, messages that lead to the fix, and rows
whose fields hold the wrong types."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studio.data.checks import check_dataset
from studio.data.mapping import (
    FORMATS, MAPPING_KEYS, NO_FIELD, FieldMapping, normalize_row, parse_mapping_overrides,
)
from studio.data.records import load_dataset
from studio.data.template import join_reasoning


def write_jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def load(tmp_path, rows, **kwargs):
    return load_dataset(write_jsonl(tmp_path, rows), **kwargs)


def parts(mapping):
    """The mapping as (layout, {part: field}) for compact asserts."""
    return mapping.format, {key: value for key, value in mapping.to_json().items()
                            if key not in ("layout", "evidence") and value}


def codes(dataset):
    return {issue.code for issue in check_dataset(dataset).issues}


# --------------------------------------------------------------------------------------------------
# The layouts

S1K = [
    {"solution": "1. Let $n = 2^k$. 2. Then the sum is $2^{k+1} - 1$.",
     "question": "Find the sum $1 + 2 + 4 + \\dots + 2^k$.",
     "cot_type": "math", "source_type": "AI-MO/NuminaMath-CoT/aops_forum",
     "metadata": "{'source': 'aops_forum', 'messages': [...]}", "cot": None,
     "thinking_trajectories": ["The terms double each time, a geometric series with ratio 2.",
                               "So the sum is $2^{k+1} - 1$; check $k = 1$: $1 + 2 = 3 = 2^2 - 1$."],
     "attempt": "The sum of the geometric series is $2^{k+1} - 1$."},
    {"solution": "By Vieta, the roots sum to 5.",
     "question": "What is the sum of the roots of $x^2 - 5x + 6 = 0$?",
     "cot_type": "math", "source_type": "qq8933/AIME_1983_2024", "metadata": "{'Year': 1990}", "cot": None,
     "thinking_trajectories": ["The roots are 2 and 3, or by Vieta the sum is $-b/a = 5$."],
     "attempt": "The roots sum to $5$."},
]


def test_s1k_thinking_trajectories_go_with_the_attempt(tmp_path):
    dataset = load(tmp_path, S1K)
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "question", "reasoning": "thinking_trajectories", "answer": "attempt"})
    first = dataset.records[0]
    assert first.messages == [("user", S1K[0]["question"]), ("assistant", join_reasoning(
        "\n\n".join(S1K[0]["thinking_trajectories"]), S1K[0]["attempt"]))]
    # The gold solution and the metadata stay with the row for export.
    assert first.extra == {key: S1K[0][key] for key in ("solution", "cot_type", "source_type", "metadata", "cot")}
    assert dataset.mapping.evidence == {"rows": 2, "mapped": 2, "with_reasoning": 2}
    assert codes(dataset) == set()


def s1k_11_row(question, gemini, deepseek, solution):
    return {"solution": solution, "question": question, "cot_type": "math", "source_type": "AI-MO/NuminaMath-CoT",
            "metadata": "{}", "gemini_thinking_trajectory": gemini[0], "gemini_attempt": gemini[1],
            "deepseek_thinking_trajectory": deepseek[0], "deepseek_attempt": deepseek[1],
            "gemini_grade": "Yes", "gemini_grade_reason": "I think the solution is correct.",
            "deepseek_grade": "Yes", "deepseek_grade_reason": "The answer matches."}


S1K_11 = [
    s1k_11_row("How many positive divisors does 12 have?",
               ("Divisors of 12: 1, 2, 3, 4, 6, 12.", "12 has 6 divisors."),
               ("Okay, 12 = 2^2 * 3, so (2+1)(1+1) = 6 divisors.", "**6**"), "6"),
    s1k_11_row("What is 7 choose 2?", ("7*6/2 = 21.", "21"),
               ("Hmm, C(7,2) = 7!/(2!5!) = 21.", "**21**"), "21"),
]


def test_s1k_11_prefers_the_deepseek_pair_and_reports_gemini_as_runner_up(tmp_path):
    dataset = load(tmp_path, S1K_11)
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "question", "reasoning": "deepseek_thinking_trajectory", "answer": "deepseek_attempt"})
    assert dataset.records[1].messages[1] == ("assistant", join_reasoning("Hmm, C(7,2) = 7!/(2!5!) = 21.", "**21**"))
    runner_up = dataset.alternatives[0]
    assert (runner_up.reasoning, runner_up.response) == ("gemini_thinking_trajectory", "gemini_attempt")
    assert runner_up.evidence == {"rows": 2, "mapped": 2, "with_reasoning": 2}
    assert "gemini_attempt" in dataset.records[0].extra and "deepseek_attempt" not in dataset.records[0].extra


MEDICAL_O1 = [
    {"Question": "A 45-year-old man has crushing chest pain radiating to the left arm. What is the first test?",
     "Complex_CoT": "Okay, crushing chest pain radiating to the arm suggests an acute coronary syndrome. The first "
                    "and fastest test is a 12-lead ECG.",
     "Response": "A 12-lead ECG within 10 minutes of arrival."},
    {"Question": "Which vitamin deficiency causes scurvy?",
     "Complex_CoT": "Scurvy: bleeding gums, poor wound healing — collagen synthesis needs vitamin C.",
     "Response": "Vitamin C (ascorbic acid)."},
]


def test_medical_o1_capitalized_fields(tmp_path):
    dataset = load(tmp_path, MEDICAL_O1)
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "Question", "reasoning": "Complex_CoT", "answer": "Response"})
    assert dataset.records[1].messages == [
        ("user", MEDICAL_O1[1]["Question"]),
        ("assistant", join_reasoning(MEDICAL_O1[1]["Complex_CoT"], MEDICAL_O1[1]["Response"]))]
    assert dataset.records[0].extra is None
    assert codes(dataset) == set()


def test_medical_r1_question_think_answer(tmp_path):
    rows = [{"question": "What is the first-line drug for type 2 diabetes?",
             "think": "Guidelines recommend metformin first unless contraindicated.", "answer": "Metformin."},
            {"question": "Which nerve is damaged in wrist drop?",
             "think": "Wrist drop means the extensors fail: the radial nerve.", "answer": "The radial nerve."}]
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("reasoning_field", {"prompt": "question", "reasoning": "think", "answer": "answer"})
    assert dataset.records[0].messages[1] == ("assistant", join_reasoning(rows[0]["think"], rows[0]["answer"]))


OPEN_MATH_REASONING = [
    {"expected_answer": "5", "problem_type": "has_answer_extracted", "problem_source": "aops_c4_high_school_math",
     "generation_model": "DeepSeek-R1", "pass_rate_72b_tir": "0.84375",
     "problem": "Find the remainder when $2^{100}$ is divided by 7... wait, by 11.",
     "generated_solution": "<think>\nBy Fermat, 2^10 ≡ 1 mod 11, so 2^100 ≡ 1.\n</think>\n\nThe remainder is $1$.",
     "inference_mode": "cot", "used_in_kaggle": False},
    {"expected_answer": "12", "problem_type": "has_answer_extracted", "problem_source": "aops_c6_high_school_olympiads",
     "generation_model": "DeepSeek-R1", "pass_rate_72b_tir": "1/32", "problem": "How many edges does a cube have?",
     "generated_solution": "<think>\nA cube has 12 edges: 4 top, 4 bottom, 4 vertical.\n</think>\n\n$12$",
     "inference_mode": "cot", "used_in_kaggle": True},
]


def test_open_math_reasoning_inline_think_is_the_response(tmp_path):
    dataset = load(tmp_path, OPEN_MATH_REASONING)
    assert parts(dataset.mapping) == ("query_response", {"prompt": "problem", "answer": "generated_solution"})
    assert dataset.records[1].messages == [("user", "How many edges does a cube have?"),
                                           ("assistant", OPEN_MATH_REASONING[1]["generated_solution"])]
    assert dataset.records[1].extra["expected_answer"] == "12"  # kept beside the turns, on the fast path too
    assert codes(dataset) == set()


CHINESE_110K = [
    {"input": "能给我讲一个寓意深刻的故事吗？", "content": "好的，这是《小马过河》的故事……",
     "reasoning_content": "嗯，用户想听一个寓意深刻的故事。我想到了《小马过河》，它讲的是要亲自尝试。",
     "repo_name": "coig/neo", "prompt_tokens_len": 9, "reasoning_content_tokens_len": 40, "content_tokens_len": 300,
     "score": 8},
    {"input": "1+1等于几？", "content": "1+1=2。", "reasoning_content": "这是一个简单的加法：1加1等于2。",
     "repo_name": "Haijian/Advanced-Math", "prompt_tokens_len": 6, "reasoning_content_tokens_len": 12,
     "content_tokens_len": 5, "score": 10},
]


def test_chinese_deepseek_r1_distill_110k(tmp_path):
    dataset = load(tmp_path, CHINESE_110K)
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "input", "reasoning": "reasoning_content", "answer": "content"})
    assert dataset.records[1].messages == [("user", "1+1等于几？"), ("assistant", join_reasoning(
        "这是一个简单的加法：1加1等于2。", "1+1=2。"))]
    assert dataset.records[0].extra["score"] == 8


OT_SYSTEM = ("Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
             "process before providing the final precise and accurate solutions.")


def open_thoughts_row(question, thought, solution, gold):
    return {"system": OT_SYSTEM,
            "conversations": [{"from": "user", "value": question},
                              {"from": "assistant", "value": f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>"
                                                             f"\n\n<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>"}],
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": gold}]}


OPEN_THOUGHTS = [
    open_thoughts_row("Return your final response within \\boxed{}. What is 12 * 12?", "12 * 12 = 144.",
                      "\\boxed{144}", "144"),
    open_thoughts_row("Generate an executable Python function that reverses a string.", "Slicing with [::-1].",
                      "def rev(s):\n    return s[::-1]", "def rev(s): return ''.join(reversed(s))"),
]


def test_open_thoughts_picks_the_r1_trace_and_keeps_the_system(tmp_path):
    dataset = load(tmp_path, OPEN_THOUGHTS)
    assert parts(dataset.mapping) == ("sharegpt", {"turns": "conversations", "system": "system"})
    row = OPEN_THOUGHTS[0]
    assert dataset.records[0].messages == [("system", OT_SYSTEM), ("user", row["conversations"][0]["value"]),
                                           ("assistant", row["conversations"][1]["value"])]
    assert dataset.records[0].extra == {"messages": row["messages"]}  # the gold solution, kept for export
    runner_up = dataset.alternatives[0]
    assert parts(runner_up) == ("messages", {"turns": "messages", "system": "system"})
    assert runner_up.evidence["with_reasoning"] == 0 and dataset.mapping.evidence["with_reasoning"] == 2
    assert "foreign_think_tags" in codes(dataset)  # the checks see the thought tags; the fix converts them


def test_bespoke_stratos_system_beside_conversations(tmp_path):
    rows = [{"system": OT_SYSTEM, "conversations": row["conversations"]} for row in OPEN_THOUGHTS]
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("sharegpt", {"turns": "conversations", "system": "system"})
    assert [role for role, _ in dataset.records[1].messages] == ["system", "user", "assistant"]
    assert dataset.records[1].messages[0] == ("system", OT_SYSTEM)


def test_open_thoughts_metadata_pairs_deepseek_reasoning_with_its_solution(tmp_path):
    rows = [{"problem": "Compute the derivative of x^3.", "deepseek_reasoning": "Power rule: 3x^2.",
             "deepseek_solution": "The derivative is $3x^2$.", "ground_truth_solution": "$3x^2$",
             "domain": "math", "source": "numina_math", "test_cases": None, "starter_code": None},
            {"problem": "Is 91 prime?", "deepseek_reasoning": "91 = 7 * 13, so it is not prime.",
             "deepseek_solution": "No: $91 = 7 \\times 13$.", "ground_truth_solution": "No",
             "domain": "math", "source": "numina_math", "test_cases": None, "starter_code": None}]
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "problem", "reasoning": "deepseek_reasoning", "answer": "deepseek_solution"})
    assert dataset.records[1].messages[1] == ("assistant", join_reasoning(rows[1]["deepseek_reasoning"],
                                                                          rows[1]["deepseek_solution"]))
    assert dataset.records[1].extra["ground_truth_solution"] == "No"


DOLPHIN = [
    {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of Australia?"}],
     "model": "deepseek-reasoner",
     "reasoning": "People often say Sydney, but the capital is Canberra, chosen as a compromise.",
     "answer": "The capital of Australia is **Canberra**."},
    {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "Translate 'good morning' into French."}],
     "model": "deepseek-reasoner", "reasoning": "Good morning in French is 'bonjour'.", "answer": "Bonjour !"},
]


def test_dolphin_r1_turns_ending_with_the_user_plus_reasoning_and_answer(tmp_path):
    dataset = load(tmp_path, DOLPHIN)
    assert parts(dataset.mapping) == ("messages", {"turns": "messages", "reasoning": "reasoning", "answer": "answer"})
    assert dataset.records[0].messages == [
        ("system", "You are a helpful assistant."), ("user", "What is the capital of Australia?"),
        ("assistant", join_reasoning(DOLPHIN[0]["reasoning"], DOLPHIN[0]["answer"]))]
    assert dataset.records[0].extra == {"model": "deepseek-reasoner"}
    assert codes(dataset) == set()


def nemotron_row(question, output, on=True):
    return {"input": [{"role": "user", "content": question}], "output": output, "category": "math",
            "license": "cc-by-4.0", "reasoning": "on" if on else "off", "generator": "DeepSeek-R1",
            "used_in_training": "yes", "version": "v1", "system_prompt": f"detailed thinking {'on' if on else 'off'}"}


NEMOTRON = [
    nemotron_row("Solve 2x + 3 = 11.", "<think>\nSubtract 3: 2x = 8, so x = 4.\n</think>\n\n$x = 4$"),
    nemotron_row("What is 15% of 80?", "<think>\n0.15 * 80 = 12.\n</think>\n\n12"),
    nemotron_row("Name a prime above 90.", "97 is prime.", on=False),
]


def test_llama_nemotron_input_turns_output_and_an_on_off_switch(tmp_path):
    dataset = load(tmp_path, NEMOTRON)
    # `reasoning` holds "on"/"off", a switch, not reasoning text: the evidence leaves it out.
    assert parts(dataset.mapping) == ("messages", {"turns": "input", "answer": "output", "system": "system_prompt"})
    assert dataset.records[0].messages == [("system", "detailed thinking on"), ("user", "Solve 2x + 3 = 11."),
                                           ("assistant", NEMOTRON[0]["output"])]
    assert dataset.records[0].extra["reasoning"] == "on"
    assert any(alternative.reasoning == "reasoning" for alternative in dataset.alternatives)


def test_open_r1_math_picks_messages(tmp_path):
    reply = "<think>\nThe angles of a triangle sum to 180, so 180 - 50 - 60 = 70.\n</think>\n\n$\\boxed{70}$"
    rows = [{"problem": "Two angles of a triangle are 50° and 60°. Find the third.",
             "solution": "180 - 110 = 70", "answer": "70", "problem_type": "Geometry", "question_type": "math-word-problem",
             "source": "olympiads", "uuid": "a1b2", "is_reasoning_complete": [True, True],
             "generations": [reply, reply.replace("70.", "70 degrees.")], "correctness_math_verify": [True, True],
             "correctness_llama": None, "finish_reasons": None, "correctness_count": 2,
             "messages": [{"role": "user", "content": "Two angles of a triangle are 50° and 60°. Find the third."},
                          {"role": "assistant", "content": reply}]}] * 2
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("messages", {"turns": "messages"})
    assert dataset.records[0].messages == [("user", rows[0]["problem"]), ("assistant", reply)]
    assert "generations" in dataset.records[0].extra


def test_servicenow_r1_distill_sft_reannotated_messages(tmp_path):
    reply = "<think>\nA rectangle 3 by 4 has area 12.\n</think>\n\nThe area is 12."
    rows = [{"id": "1", "reannotated_assistant_content": reply, "problem": "Area of a 3 by 4 rectangle?",
             "source": "synthetic_math", "solution": "3 * 4 = 12",
             "messages": [{"role": "user", "content": "Area of a 3 by 4 rectangle?"},
                          {"role": "assistant", "content": "3 * 4 = 12"}],
             "reannotated_messages": [{"role": "user", "content": "Area of a 3 by 4 rectangle?"},
                                      {"role": "assistant", "content": reply}]}]
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("messages", {"turns": "reannotated_messages"})
    assert dataset.records[0].messages[-1] == ("assistant", reply)


def test_turn_level_reasoning_content_and_thinking(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "What is 6 * 7?"},
                          {"role": "assistant", "content": "42", "reasoning_content": "6 * 7 = 42."}]},
            # Multilingual-Thinking: a developer turn and `thinking` beside the content.
            {"messages": [{"role": "developer", "content": "reasoning language: French"},
                          {"role": "user", "content": "Capital of Italy?", "thinking": None},
                          {"role": "assistant", "content": "Rome.", "thinking": "La capitale de l'Italie est Rome."}]}]
    dataset = load(tmp_path, rows)
    assert parts(dataset.mapping) == ("messages", {"turns": "messages"})
    assert dataset.records[0].messages[1] == ("assistant", join_reasoning("6 * 7 = 42.", "42"))
    assert dataset.records[1].messages == [("system", "reasoning language: French"), ("user", "Capital of Italy?"),
                                           ("assistant", join_reasoning("La capitale de l'Italie est Rome.", "Rome."))]
    assert codes(dataset) == set()


def test_llama_factory_typed_blocks_are_read_not_empty(tmp_path):
    rows = [{"messages": [{"role": "user", "content": [{"type": "text", "value": f"What is {n} + {n}?"}]},
                          {"role": "assistant", "content": [{"type": "reasoning", "value": f"{n} + {n} = {2 * n}."},
                                                            {"type": "text", "value": f"The answer is {2 * n}."}]}]}
            for n in range(500)]
    dataset = load(tmp_path, rows)
    assert dataset.mapping.turns == "messages"
    assert dataset.records[7].messages == [("user", "What is 7 + 7?"),
                                           ("assistant", join_reasoning("7 + 7 = 14.", "The answer is 14."))]
    assert len({tuple(record.messages) for record in dataset.records}) == 500
    found = codes(dataset)
    assert "duplicate" not in found and "empty_prompt" not in found and found == set()


def test_thinking_blocks_and_openai_text_blocks(tmp_path):
    rows = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Is 2 prime?"}]},
                          {"role": "assistant", "content": [{"type": "thinking", "thinking": "2 has divisors 1, 2."},
                                                            {"type": "text", "text": "Yes."}]}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Is 9 prime?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "<think>\n9 = 3 * 3.\n</think>\n\n"},
                                                            {"type": "text", "text": "No."}]}]}]
    dataset = load(tmp_path, rows)
    assert dataset.records[0].messages == [("user", "Is 2 prime?"),
                                           ("assistant", join_reasoning("2 has divisors 1, 2.", "Yes."))]
    assert dataset.records[1].messages == [("user", "Is 9 prime?"), ("assistant", "<think>\n9 = 3 * 3.\n</think>\n\nNo.")]
    assert codes(dataset) == set()


# --------------------------------------------------------------------------------------------------
# Parquet and CSV


def test_parquet_of_s1k_and_dolphin(tmp_path):
    for name, rows in (("s1k.parquet", S1K), ("dolphin.parquet", DOLPHIN)):
        path = tmp_path / name
        pq.write_table(pa.Table.from_pylist(rows), path)
        from_parquet, from_jsonl = load_dataset(str(path)), load(tmp_path, rows)
        assert from_parquet.mapping == from_jsonl.mapping
        assert [r.messages for r in from_parquet.records] == [r.messages for r in from_jsonl.records]


def test_csv_of_medical_o1_and_open_thoughts(tmp_path):
    for name, rows in (("medical.csv", MEDICAL_O1), ("ot.csv", OPEN_THOUGHTS)):
        path = tmp_path / name
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        from_csv, from_jsonl = load_dataset(str(path)), load(tmp_path, rows)
        assert from_csv.mapping == from_jsonl.mapping
        assert [r.messages for r in from_csv.records] == [r.messages for r in from_jsonl.records]


# --------------------------------------------------------------------------------------------------
# Switching mappings, overrides


ALL_LAYOUTS = {"s1k": S1K, "s1k-1.1": S1K_11, "medical-o1": MEDICAL_O1, "open-math": OPEN_MATH_REASONING,
               "chinese": CHINESE_110K, "open-thoughts": OPEN_THOUGHTS, "dolphin": DOLPHIN, "nemotron": NEMOTRON}


@pytest.mark.parametrize("name", list(ALL_LAYOUTS))
def test_to_overrides_reproduces_the_mapping_and_every_alternative(tmp_path, name):
    path = write_jsonl(tmp_path, ALL_LAYOUTS[name])
    dataset = load_dataset(path)
    for mapping in [dataset.mapping, *dataset.alternatives]:
        overrides = mapping.to_overrides()
        assert overrides["layout"] == mapping.format and all(isinstance(v, str) for v in overrides.values())
        again = load_dataset(path, overrides=overrides)
        assert again.mapping == mapping, overrides
        assert again.mapping.evidence == mapping.evidence
        if mapping != dataset.mapping:  # the detected one is offered back
            assert dataset.mapping in again.alternatives


def test_switching_to_the_runner_up_reads_the_rows_with_it(tmp_path):
    path = write_jsonl(tmp_path, S1K_11)
    runner_up = load_dataset(path).alternatives[0]
    again = load_dataset(path, overrides=runner_up.to_overrides())
    assert again.records[0].messages[1] == ("assistant", join_reasoning(S1K_11[0]["gemini_thinking_trajectory"],
                                                                        S1K_11[0]["gemini_attempt"]))


def test_field_without_format_infers_the_layout(tmp_path):
    assert parse_mapping_overrides(None, {"prompt": "q", "answer": "a"}) == FieldMapping(
        "query_response", prompt="q", response="a")
    assert parse_mapping_overrides(None, {"prompt": "q", "response": "a", "reasoning": "r"}).format == "reasoning_field"
    assert parse_mapping_overrides(None, {"turns": "chat"}) == FieldMapping("messages", turns="chat")
    rows = [{"q": "What is 2 + 2?", "a": "<think>\n2 + 2 = 4.\n</think>\n\n4"}]
    dataset = load(tmp_path, rows, overrides={"format": None, "prompt": "q", "answer": "a"})
    assert dataset.format == "query_response" and dataset.records[0].problem is None
    # A list of from/value turns under another name reads as sharegpt.
    chat = [{"chat": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "<think>\nhi\n</think>\n\nHi!"}]}]
    dataset = load(tmp_path, chat, overrides={"turns": "chat"})
    assert dataset.format == "sharegpt" and dataset.records[0].messages[0] == ("user", "Hi?")
    # layout as the key for format, answer for response, over a detected mapping.
    dataset = load(tmp_path, MEDICAL_O1, overrides={"layout": "query_response", "answer": "Complex_CoT"})
    assert parts(dataset.mapping) == ("query_response", {"prompt": "Question", "answer": "Complex_CoT"})


def test_format_alone_detects_the_fields_within_that_layout(tmp_path):
    dataset = load(tmp_path, MEDICAL_O1, overrides={"format": "reasoning_field"})
    assert parts(dataset.mapping) == ("reasoning_field", {
        "prompt": "Question", "reasoning": "Complex_CoT", "answer": "Response"})
    dataset = load(tmp_path, OPEN_MATH_REASONING, overrides={"format": "query_response"})
    assert dataset.mapping.response == "generated_solution"
    # No reasoning field to find: the message says which keys to give, and names the rows' fields.
    with pytest.raises(ValueError) as error:
        load(tmp_path, [{"q": "2 + 2?", "a": "4"}], overrides={"format": "reasoning_field"})
    message = str(error.value)
    assert "--field prompt=NAME" in message and "--field reasoning=NAME" in message and "q" in message
    assert "None" not in message


def test_override_errors_say_what_to_do():
    with pytest.raises(ValueError, match="unknown mapping field"):
        parse_mapping_overrides(None, {"answer_col": "x"})
    with pytest.raises(ValueError, match="turns"):
        parse_mapping_overrides(None, {"format": "messages", "prompt": "q"})
    with pytest.raises(ValueError, match="--field prompt=NAME"):
        parse_mapping_overrides(None, {"answer": "a"})


def test_mapping_keys_describe_every_override():
    assert {"layout", "format", "prompt", "reasoning", "answer", "system", "turns", "input"} <= set(MAPPING_KEYS)
    assert all(isinstance(text, str) and text for text in MAPPING_KEYS.values())
    assert all(layout in MAPPING_KEYS["layout"] for layout in FORMATS)
    mapping = FieldMapping("reasoning_field", prompt="Question", response="Response", reasoning="Complex_CoT")
    assert mapping.to_overrides() == {"layout": "reasoning_field", "prompt": "Question", "answer": "Response",
                                      "reasoning": "Complex_CoT", "system": NO_FIELD, "input": NO_FIELD}
    assert set(mapping.to_json()) == {"layout", "prompt", "reasoning", "answer", "system", "turns", "input", "evidence"}


# --------------------------------------------------------------------------------------------------
# Messages that lead to the fix


def test_misspelt_field_is_missing_field_not_silently_no_reasoning(tmp_path):
    dataset = load(tmp_path, MEDICAL_O1, overrides={"reasoning": "Complex_Cot"})
    problems = [record.problem for record in dataset.records]
    assert all(code == "missing_field" for code, _ in problems)
    message = problems[1][1]
    assert message.startswith("line 2: field `Complex_Cot` (the reasoning) is missing")
    assert "Complex_CoT, Question, Response" in message and "--field reasoning=NAME" in message
    # A present but empty reasoning stays empty: the checks call it missing_think.
    rows = [dict(MEDICAL_O1[0]), {**MEDICAL_O1[1], "Complex_CoT": None}]
    dataset = load(tmp_path, rows)
    assert dataset.records[1].problem is None and "missing_think" in codes(dataset)


def test_role_that_is_an_object_is_wrong_type(tmp_path):
    rows = [{"conversation": [{"role": "user", "content": "2 + 2?"},
                              {"role": "assistant", "content": "<think>\n4\n</think>\n\n4"}]},
            {"conversation": [{"role": {"name": "user"}, "content": "4 + 4?"},
                              {"role": "assistant", "content": "<think>\n8\n</think>\n\n8"}]},
            {"conversation": [{"role": "user", "content": 7},
                              {"role": "assistant", "content": "<think>\n8\n</think>\n\n8"}]}]
    records = load(tmp_path, rows).records
    assert records[1].problem == ("wrong_type", 'line 2: turn 1 of `conversation`: the role is an object, expected '
                                                'text such as "user"')
    assert records[2].problem[0] == "wrong_type" and "turn 1" in records[2].problem[1]
    assert "content" in records[2].problem[1] and "a number" in records[2].problem[1]


def test_unknown_format_names_the_fields_the_guess_and_the_flags(tmp_path):
    rows = [{"ask": "2 + 2?", "bot_says": "<think>\n4\n</think>\n\n4", "meta": 1}]
    problem = load(tmp_path, rows).records[0].problem
    assert problem[0] == "unknown_format"
    message = problem[1]
    assert message.startswith("line 1: ") and "ask, bot_says, meta" in message
    assert "--field prompt=ask" in message and "--field answer=bot_says" in message
    assert "reasoning" not in message.split("Known layouts")[0]  # inline <think>: no reasoning field needed
    assert "Field mapping" in message
    problem = load(tmp_path, [{"foo": 1, "bar": 2}]).records[0].problem
    assert "could not find the prompt, the answer or the reasoning" in problem[1]
    assert "--field prompt=NAME --field answer=NAME --field reasoning=NAME" in problem[1]


BAD_VALUES = [None, 0, 1.5, True, {"x": 1}, [], [1, 2], [[1]], [{"type": "text", "text": 3}], ""]


def replace_everywhere(row):
    """Every variant of the row with one field (top level, or a turn's key) replaced by each bad value."""
    for key, value in row.items():
        for bad in BAD_VALUES:
            yield {**row, key: bad}
        if isinstance(value, list):
            for index, turn in enumerate(value):
                if isinstance(turn, dict):
                    for turn_key, turn_value in turn.items():
                        for bad in BAD_VALUES:
                            turns = [dict(t) if isinstance(t, dict) else t for t in value]
                            turns[index][turn_key] = bad
                            yield {**row, key: turns}
                        if isinstance(turn_value, list):  # content blocks: each block's keys too
                            for block_index, block in enumerate(turn_value):
                                for block_key in block:
                                    for bad in BAD_VALUES:
                                        turns = [dict(t) if isinstance(t, dict) else t for t in value]
                                        blocks = [dict(b) for b in turn_value]
                                        blocks[block_index][block_key] = bad
                                        turns[index][turn_key] = blocks
                                        yield {**row, key: turns}
                else:
                    for bad in BAD_VALUES:
                        yield {**row, key: [*value[:index], bad, *value[index + 1:]]}


FUZZ_ROWS = [S1K[0], MEDICAL_O1[0], OPEN_THOUGHTS[0], DOLPHIN[0], NEMOTRON[0], CHINESE_110K[0],
             {"instruction": "Add.", "input": "3 and 5", "output": "<think>\n8\n</think>\n\n8", "system": "Be brief."},
             {"messages": [{"role": "user", "content": [{"type": "text", "value": "Q?"}]},
                           {"role": "assistant", "content": [{"type": "reasoning", "value": "r"},
                                                             {"type": "text", "value": "a"}]}]}]


@pytest.mark.parametrize("index", range(len(FUZZ_ROWS)))
def test_fuzzed_types_never_raise(tmp_path, index):
    good = FUZZ_ROWS[index]
    mapping = load(tmp_path, [good]).mapping
    variants = list(replace_everywhere(good))
    # Under the good row's mapping, row by row: a problem with a known code or messages, never an exception.
    for variant in variants:
        try:
            messages = normalize_row(variant, mapping)
        except Exception as error:  # noqa: BLE001 - only the module's own reason is allowed
            assert type(error).__name__ == "_Unmappable", (variant, error)
            assert error.code in ("unknown_format", "missing_field", "wrong_type"), error
        else:
            assert all(isinstance(role, str) and isinstance(content, str) for role, content in messages)
    # Whole files: detected, and forced to the good mapping.
    dataset = load(tmp_path, [good, *variants])
    forced = load(tmp_path, variants, overrides=mapping.to_overrides())
    for records in (dataset.records, forced.records):
        for record in records:
            assert record.problem is None or record.problem[0] in ("unknown_format", "missing_field", "wrong_type")
    check_dataset(forced)


def test_wrong_types_in_turns_are_wrong_type_and_name_the_turn(tmp_path):
    base = {"conversation": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "<think>r</think>a"}]}
    for key in ("role", "content"):
        for bad in (0, 1.5, True, {"x": 1}, [[1]]):
            turns = [dict(turn) for turn in base["conversation"]]
            turns[1][key] = bad
            problem = load(tmp_path, [base, {"conversation": turns}]).records[1].problem
            assert problem[0] == "wrong_type", (key, bad, problem)
            assert problem[1].startswith("line 2: turn 2 of `conversation`") and key in problem[1]
