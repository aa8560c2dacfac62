"""No "�" from a character split over several tokens ever reaches a reply: while it streams and at its end."""

import time

import pytest

from studio.chat.generate import BASE, REDRAW_S, ChatEngine, SamplingSettings
from studio.chat.reply_text import readable_text

TEXT = "Ω = 9 🙂, 中 €"


def test_every_prefix_of_a_split_character_decodes_without_a_replacement(demo_tokenizer):
    ids = demo_tokenizer.encode(TEXT, add_special_tokens=False)
    plain = [demo_tokenizer.decode(ids[:end]) for end in range(1, len(ids) + 1)]
    assert any("\ufffd" in text for text in plain)  # the demo tokenizer does split these characters
    shown = [readable_text(demo_tokenizer, ids[:end]) for end in range(1, len(ids) + 1)]
    assert not any("\ufffd" in text for text in shown)
    assert shown == sorted(shown, key=len) and all(TEXT.startswith(text) for text in shown)
    assert shown[-1] == TEXT


def test_truly_invalid_bytes_are_dropped(demo_tokenizer):
    continuation = demo_tokenizer.encode("🙂", add_special_tokens=False)[1]  # a byte that never starts a character
    ids = demo_tokenizer.encode("a", add_special_tokens=False) + [continuation] + demo_tokenizer.encode(
        "b", add_special_tokens=False)
    assert "\ufffd" in demo_tokenizer.decode(ids) and readable_text(demo_tokenizer, ids) == "ab"


class ScriptedLoop:
    """Stands in for the decode loop: hands the engine fixed tokens, one redraw apart, then the end token."""

    capture = False
    slots: dict = {}

    def __init__(self, tokens, end_token):
        self.tokens, self.end_token = tokens, end_token

    def drop_slots(self, keep):
        pass

    def generate(self, input_ids, attention_mask, max_new_tokens, length, temperature, top_p, seed, on_tokens):
        for token in [*self.tokens, self.end_token]:
            time.sleep(REDRAW_S * 1.5)  # every token its own redraw, so every cut point is shown
            if not on_tokens([token] * input_ids.shape[0]):
                return


@pytest.fixture(scope="module")
def engine():
    engine = ChatEngine()
    engine.load("demo", None)
    return engine


def test_a_streaming_pane_never_shows_half_a_character(engine):
    tokenizer = engine.tokenizer
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    real_loop = engine.decode_loop
    engine.decode_loop = ScriptedLoop(ids, tokenizer.eos_token_id)
    try:
        conversation = [{"role": "user", "content": "Say it."}]
        shown = [replies[BASE].text for replies in engine.stream({BASE: conversation}, SamplingSettings())]
    finally:
        engine.decode_loop = real_loop
    assert len(shown) >= len(ids) // 2  # it did stream, cut points included
    assert not [text for text in shown if "\ufffd" in text]
    assert shown[-1] == TEXT
