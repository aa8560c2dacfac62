"""Training text keeps the reasoning the official R1-Distill template deletes, and the loss covers it."""

import copy
from pathlib import Path

import pytest

from studio.data.template import IGNORE_INDEX, encode_examples, split_reasoning, training_parts

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "r1-distill-chat-template.jinja"
REASONING = "1+1=2, because one and one make two"
REPLY = f"<think>\n{REASONING}\n</think>\n\n答案是：2"
CONVERSATION = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": REPLY}]


@pytest.fixture(params=["demo", "official"])
def tokenizer(request, demo_tokenizer):
    if request.param == "demo":
        return demo_tokenizer
    if not FIXTURE.exists():
        pytest.skip(f"the official template fixture is not here ({FIXTURE})")
    official = copy.deepcopy(demo_tokenizer)
    official.chat_template = FIXTURE.read_text(encoding="utf-8")
    return official


def test_the_chat_template_alone_would_drop_the_reasoning(tokenizer):
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert REASONING not in rendered  # the trap: "just apply the chat template" trains without reasoning


def test_training_text_keeps_the_reasoning(tokenizer):
    prompt, reasoning_part, answer_part = training_parts(tokenizer, CONVERSATION)
    assert prompt.endswith("<｜Assistant｜><think>\n")
    assert reasoning_part == f"{REASONING}\n</think>\n\n"
    assert answer_part == "答案是：2" + tokenizer.eos_token
    assert (prompt + reasoning_part + answer_part).startswith(tokenizer.bos_token)


def test_reasoning_tokens_are_inside_the_loss_mask(tokenizer):
    (example,) = encode_examples(tokenizer, [CONVERSATION])
    reasoning_ids = tokenizer(REASONING, add_special_tokens=False)["input_ids"]
    labels = example.labels
    assert all(label == IGNORE_INDEX for label in labels[:example.prompt_tokens])
    trained = labels[example.prompt_tokens:]
    assert IGNORE_INDEX not in trained
    assert trained == example.input_ids[example.prompt_tokens:]
    text = tokenizer.decode(trained)
    assert REASONING in text and "</think>" in text and text.endswith(tokenizer.eos_token)
    assert len(reasoning_ids) <= example.reasoning_end - example.prompt_tokens


def test_multi_turn_trains_the_last_reply_with_earlier_reasoning_dropped(tokenizer):
    earlier = "<think>\nearlier thoughts\n</think>\n\nfirst answer"
    messages = [{"role": "user", "content": "a?"}, {"role": "assistant", "content": earlier},
                {"role": "user", "content": "b?"}, {"role": "assistant", "content": REPLY}]
    prompt, reasoning_part, _ = training_parts(tokenizer, messages)
    assert "earlier thoughts" not in prompt and "first answer" in prompt  # as R1 sees history
    assert REASONING in reasoning_part


@pytest.mark.parametrize("text,started_inside,expected", [
    ("<think>\nplan\n</think>\n\nanswer", False, ("plan", "answer", True)),
    ("plan\n</think>\n\nanswer", True, ("plan", "answer", True)),      # generated text: no opening tag
    ("plan\n</think>\n\nanswer", False, ("plan", "answer", True)),
    ("still thinking", True, ("still thinking", "", False)),          # streaming, reasoning not closed
    ("just an answer", False, ("", "just an answer", False)),
    ("<think>\nunfinished", False, ("unfinished", "", False)),
])
def test_split_reasoning(text, started_inside, expected):
    split = split_reasoning(text, started_inside=started_inside)
    assert (split.reasoning, split.answer, split.closed) == expected
