"""The embedded demo model: tokenizer, chat template, R1-shaped generation, and its generated data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from studio.config import DEMO_MODEL_DIR, SAMPLES_DIR
from studio.demo import data as demo_data
from studio.data.template import split_reasoning

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
OFFICIAL_TEMPLATE = FIXTURES_DIR / "r1-distill-chat-template.jinja"
REPO_TEMPLATE = Path(demo_data.__file__).with_name("r1_chat_template.jinja")

R1_SPECIAL_TOKENS = {
    "bos": "<｜begin▁of▁sentence｜>",
    "eos": "<｜end▁of▁sentence｜>",
    "user": "<｜User｜>",
    "assistant": "<｜Assistant｜>",
    "think_open": "<think>",
    "think_close": "</think>",
}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(DEMO_MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR)


@pytest.fixture(scope="module")
def official_template() -> str:
    if not OFFICIAL_TEMPLATE.exists():
        pytest.skip(f"no official R1-Distill template fixture at {OFFICIAL_TEMPLATE} (../shared is absent)")
    return OFFICIAL_TEMPLATE.read_text(encoding="utf-8")


# --- Tokenizer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Tom has 3 apples and buys 5 more.",
        "小明有3个苹果，又买了5个。他现在一共有几个苹果？",
        "Emoji 🙂👍🏽 and a family 👨‍👩‍👧 survive.",
        "Mixed: naïve café, Ωmega, ελληνικά, русский, العربية, 日本語のテキスト",
        "  leading spaces, tabs\tand\nnew lines\r\n  ",
        "Final answer: \\boxed{42}",
        "\x00\x07 control bytes",
    ],
)
def test_tokenizer_round_trips_any_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    # Byte-level: there is no unknown token to fall back on.
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids


@pytest.mark.parametrize("name", sorted(R1_SPECIAL_TOKENS))
def test_r1_special_tokens_encode_to_one_id(tokenizer, name):
    token = R1_SPECIAL_TOKENS[name]
    ids = tokenizer.encode(token, add_special_tokens=False)
    assert ids == [tokenizer.convert_tokens_to_ids(token)]
    # Also inside running text, with no space around it.
    in_text = tokenizer.encode(f"a{token}b", add_special_tokens=False)
    assert ids[0] in in_text and len(in_text) == 3


def test_bos_eos_pad_are_the_r1_tokens(tokenizer):
    assert tokenizer.bos_token == R1_SPECIAL_TOKENS["bos"]
    assert tokenizer.eos_token == R1_SPECIAL_TOKENS["eos"]
    assert tokenizer.pad_token == R1_SPECIAL_TOKENS["eos"]
    assert len({tokenizer.convert_tokens_to_ids(token) for token in R1_SPECIAL_TOKENS.values()}) == 6


def test_think_tags_survive_skip_special_tokens(tokenizer):
    """As in R1-Distill, <think> tags are plain added tokens: decoding for display keeps them."""
    ids = tokenizer.encode("<think>\nx\n</think>\n\ny<｜end▁of▁sentence｜>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\ny"


# --- Chat template ---------------------------------------------------------------------------------

CONVERSATIONS = {
    "single turn": [{"role": "user", "content": "What is 3 + 5?"}],
    "multi turn with reasoning": [
        {"role": "user", "content": "What is 3 + 5?"},
        {"role": "assistant", "content": "<think>\n3 + 5 = 8.\n</think>\n\nThe answer is 8."},
        {"role": "user", "content": "小明有3个苹果，又买了5个。他现在一共有几个苹果？"},
        {"role": "assistant", "content": "<think>\n3 + 5 = 8。\n</think>\n\n答案是：8"},
        {"role": "user", "content": "And 8 × 2?"},
    ],
    "system prompt": [
        {"role": "system", "content": "You are a careful tutor."},
        {"role": "user", "content": "What is 9 - 4?"},
    ],
    "two system prompts": [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "What is 2 × 6?"},
        {"role": "assistant", "content": "The answer is 12."},
    ],
    "ends with assistant": [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>\n1+1=2\n</think>\n\n答案是：2"},
    ],
}


def test_repo_template_is_the_official_text(official_template):
    assert REPO_TEMPLATE.read_text(encoding="utf-8") == official_template


def test_tokenizer_carries_the_official_template(tokenizer, official_template):
    assert tokenizer.chat_template == official_template


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_chat_template_renders_like_the_official_one(
    tokenizer, official_template, name, add_generation_prompt
):
    messages = CONVERSATIONS[name]
    options = dict(tokenize=False, add_generation_prompt=add_generation_prompt)
    ours = tokenizer.apply_chat_template(messages, **options)
    official = tokenizer.apply_chat_template(messages, chat_template=official_template, **options)
    assert ours == official


def test_chat_template_drops_reasoning_and_opens_think(tokenizer):
    """The R1 behaviours the studio relies on (documented in the project guide), fixture or not."""
    rendered = tokenizer.apply_chat_template(CONVERSATIONS["ends with assistant"], tokenize=False)
    assert rendered == "<｜begin▁of▁sentence｜><｜User｜>1+1?<｜Assistant｜>\n\n答案是：2<｜end▁of▁sentence｜>"
    prompt = tokenizer.apply_chat_template(
        CONVERSATIONS["single turn"], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<｜Assistant｜><think>\n")


# --- Model -----------------------------------------------------------------------------------------


def test_model_is_a_small_qwen2(model):
    assert model.config.model_type == "qwen2"
    assert model.config.max_position_embeddings >= 4096
    size = sum(path.stat().st_size for path in DEMO_MODEL_DIR.iterdir() if path.is_file())
    assert size <= 8 * 1024 * 1024


def test_generation_config_follows_deepseek_advice(model, tokenizer):
    config = model.generation_config
    assert config.do_sample is True
    assert config.temperature == pytest.approx(0.6)
    assert config.top_p == pytest.approx(0.95)
    assert config.eos_token_id == tokenizer.eos_token_id
    assert config.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize(
    "question",
    [
        "Tom has 3 apples and buys 5 more. How many apples does he have now?",
        "小明有9个苹果，送给朋友4个。小明还剩几个苹果？",
        "There are 4 boxes with 6 pencils in each box. How many pencils are there in total?",
    ],
)
def test_greedy_generation_is_r1_shaped(model, tokenizer, question):
    import torch

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=200, do_sample=False)
    new_ids = output[0, prompt["input_ids"].shape[1]:].tolist()
    assert new_ids[-1] == tokenizer.eos_token_id, "the reply should end with eos"
    text = tokenizer.decode(new_ids, skip_special_tokens=True)
    split = split_reasoning(text, started_inside=True)
    assert split.closed, text
    assert split.reasoning and split.answer, text
    # The base answers plainly; boxing is what the demo fine-tune teaches.
    assert "\\boxed" not in text


# --- Generated data --------------------------------------------------------------------------------

SMALL = dict(heldout_size=10, finetune_size=20, clean_sample_size=8, pretraining_size=50, more_finetune_size=10)


def test_same_seed_gives_the_same_data():
    first = demo_data.make_demo_data(seed=7, **SMALL)
    second = demo_data.make_demo_data(seed=7, **SMALL)
    assert first == second
    assert demo_data.make_demo_data(seed=8, **SMALL).finetune != first.finetune


def test_heldout_prompts_are_never_trained_on():
    data = demo_data.make_demo_data(seed=7, **SMALL)
    heldout = {problem.question for problem in data.heldout}
    finetune = {problem.question for problem in data.finetune_set}
    pretraining = {message["content"] for messages in data.pretraining for message in messages}
    assert not heldout & finetune
    assert not heldout & pretraining


def test_answer_styles():
    english = demo_data.Problem("What is 3 + 5?", "3 + 5 = 8.", 8, demo_data.ENGLISH, "+")
    chinese = demo_data.Problem("3 + 5 等于多少？", "3 + 5 = 8。", 8, demo_data.CHINESE, "+")
    assert english.reply() == "<think>\n3 + 5 = 8.\n</think>\n\nThe answer is 8."
    assert english.answer(demo_data.BOXED_STYLE) == "The answer is \\boxed{8}"  # ends at the brace, as the base boxes
    assert chinese.answer() == "答案是：8"
    assert chinese.answer(demo_data.BOXED_STYLE) == "答案是：\\boxed{8}"


def test_the_tokenizer_texts_keep_the_answers_the_tokenizer_learned(tokenizer):
    """A rebuild trains the same tokenizer: its texts still end English boxed answers with "}." (a token of the
    vocabulary because of them), though the fine-tuning set no longer does."""
    english = demo_data.Problem("What is 3 + 5?", "3 + 5 = 8.", 8, demo_data.ENGLISH, "+")
    assert english.answer(demo_data.TOKENIZER_BOXED_STYLE) == "The answer is \\boxed{8}."
    data = demo_data.make_demo_data(seed=7, **SMALL)
    texts = demo_data.tokenizer_training_texts(data)
    assert data.finetune[0].reply(demo_data.TOKENIZER_BOXED_STYLE) in texts
    assert len(tokenizer.encode("}.", add_special_tokens=False)) == 1


def test_problem_arithmetic_is_right():
    import random

    rng = random.Random(0)
    for _ in range(300):
        problem = demo_data.random_problem(rng)
        # The step that computes the result, whatever the template or language: "a op b = c".
        a, operation, b, c = re.search(r"(\d+) ([-+×]) (\d+) = (\d+)", problem.reasoning).groups()
        expected = {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b)}[operation]
        assert int(c) == expected == problem.result and operation == problem.operation


def read_jsonl(name: str) -> list[dict]:
    with (SAMPLES_DIR / name).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_sample_files_match_the_generator():
    """The committed sample files are exactly what the build writes (default seed)."""
    data = demo_data.make_demo_data()  # the fine-tuning set's later rows are drawn after pretraining
    assert read_jsonl("demo-train.jsonl") == demo_data.finetune_rows(data.finetune_set)
    assert read_jsonl("demo-heldout.jsonl") == demo_data.heldout_rows(data.heldout)
    assert read_jsonl("clean-sample.jsonl") == demo_data.clean_sample_rows(data.clean_sample)


def test_demo_train_rows_box_their_answer():
    rows = read_jsonl("demo-train.jsonl")
    assert len(rows) >= 600
    for row in rows:
        user, assistant = row["conversation"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        split = split_reasoning(assistant["content"])
        assert split.closed and split.reasoning
        assert re.fullmatch(r"(The answer is |答案是：)\\boxed\{\d+\}", split.answer), split.answer


def test_heldout_rows_are_prompts_with_numeric_references():
    rows = read_jsonl("demo-heldout.jsonl")
    assert len(rows) >= 40
    trained = {row["conversation"][0]["content"] for row in read_jsonl("demo-train.jsonl")}
    for row in rows:
        assert set(row) == {"prompt", "reference"}
        assert row["reference"].isdigit()
        assert row["prompt"] not in trained


def test_clean_sample_is_clean():
    rows = read_jsonl("clean-sample.jsonl")
    assert len(rows) >= 30
    assert len({row["query"] for row in rows}) == len(rows)
    assert len({row["response"] for row in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"query", "response"}
        response = row["response"]
        assert response.count("<think>") == 1 and response.count("</think>") == 1
        assert response.index("<think>") < response.index("</think>")
        split = split_reasoning(response)
        assert split.closed and split.reasoning and split.answer
        assert "\\boxed" not in split.answer


# --- The demo fine-tune, at the default sampling ---------------------------------------------------

BOXED_ANSWER = re.compile(r"\\boxed\{\d+\}")


def taught_format(text: str) -> bool:
    """What the demo fine-tune teaches: the reasoning closed by </think>, then an answer holding a complete
    \\boxed{…}, with no broken character anywhere."""
    split = split_reasoning(text, started_inside=True)
    return split.closed and bool(BOXED_ANSWER.search(split.answer)) and "\ufffd" not in text


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo preset trained on the demo set, as the Train tab's Start does with its defaults."""
    from studio.train.job import TrainingJob, default_config

    folder = tmp_path_factory.mktemp("demo-preset") / "run"
    status = TrainingJob(default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(folder), model="demo")).run()
    assert status["state"] == "completed", status
    return folder


def test_the_demo_lora_beats_the_base_on_the_taught_format_at_the_default_sampling(demo_run):
    from studio.chat.compare import read_prompts, run_compare
    from studio.chat.generate import BASE, LORA, ChatEngine, SamplingSettings
    from studio.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P

    engine = ChatEngine()
    engine.load("demo", str(demo_run / "adapter"))
    prompts = read_prompts(SAMPLES_DIR / "demo-heldout.jsonl")
    settings = SamplingSettings(temperature=DEFAULT_TEMPERATURE, top_p=DEFAULT_TOP_P, max_new_tokens=256, seed=0)
    replies = [row.replies for row in run_compare(engine, prompts, settings, batch_size=16).rows]  # the CPU's batch
    engine.unload()
    base = sum(taught_format(reply[BASE].text) for reply in replies)
    lora = sum(taught_format(reply[LORA].text) for reply in replies)
    broken = [reply[LORA].text[-40:] for reply in replies if not taught_format(reply[LORA].text)]
    # Measured: base 0 of 50, LoRA 50 of 50 (seeds 0-1). Before the set ended English answers at the brace, the
    # LoRA sampled garbage after the number in 24 of 25 English answers ("\boxed{25ith"): 26 of 50.
    assert lora >= 0.9 * len(prompts) and lora - base >= 0.8 * len(prompts), (base, lora, broken[:5])
