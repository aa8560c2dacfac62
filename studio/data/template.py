"""R1 text for training and for generation.

The official R1-Distill chat template deletes everything up to `</think>` from every assistant message,
and its generation prompt already ends with `<think>\\n`. Rendering a full conversation through it would
train the model without its reasoning. So training text is built in three parts:

    prompt     = the template's own generation prompt for the turns before the last reply
                 (ends with `<｜Assistant｜><think>\\n` for R1 models)
    reasoning  = the last reply's reasoning and the closing `</think>`
    answer     = the answer and the end-of-sequence token

Each part is tokenized on its own and the ids are concatenated; the loss covers reasoning and answer.
The data checks measure lengths with this same function, so "truncated" means what training will cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import THINK_CLOSE, THINK_OPEN


def join_reasoning(reasoning: str, answer: str) -> str:
    """The normalized assistant content: reasoning in <think> tags, then the answer."""
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer.strip()}"


@dataclass(frozen=True)
class ReasoningSplit:
    reasoning: str
    answer: str
    closed: bool  # whether `</think>` was seen; False means the text is all (unfinished) reasoning


def split_reasoning(text: str, *, started_inside: bool = False) -> ReasoningSplit:
    """Split R1 output into reasoning and answer.

    Works whether or not the opening tag is in the text: R1 generation starts after the prompt's
    `<think>\\n`, so generated text carries only `</think>`. With `started_inside` an unclosed text is
    reasoning still being written; otherwise a text with no tags at all is all answer.
    """
    body = text.lstrip()
    had_open = body.startswith(THINK_OPEN)
    if had_open:
        body = body[len(THINK_OPEN):]
    end = body.find(THINK_CLOSE)
    if end >= 0:
        return ReasoningSplit(body[:end].strip(), body[end + len(THINK_CLOSE):].strip(), True)
    if had_open or started_inside:
        return ReasoningSplit(body.strip(), "", False)
    return ReasoningSplit("", text.strip(), False)


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The model's own generation prompt for `messages` (earlier replies lose their reasoning)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def training_parts(tokenizer, messages: list[dict]) -> tuple[str, str, str]:
    """(prompt, reasoning part, answer part) of a conversation whose last turn is the assistant's."""
    prompt = prompt_text(tokenizer, messages[:-1])
    split = split_reasoning(messages[-1]["content"])
    # R1 templates open the reasoning in the generation prompt; other templates do not.
    if prompt.endswith(THINK_OPEN + "\n"):
        opener = ""
    elif prompt.endswith(THINK_OPEN):
        opener = "\n"
    else:
        opener = THINK_OPEN + "\n"
    reasoning_part = f"{opener}{split.reasoning}\n{THINK_CLOSE}\n\n"
    answer_part = split.answer + (tokenizer.eos_token or "")
    return prompt, reasoning_part, answer_part


IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    input_ids: list[int]
    prompt_tokens: int
    reasoning_end: int  # index just past the reasoning part (its `</think>` included)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def labels(self) -> list[int]:
        """-100 on the prompt: the loss covers reasoning and answer only. Made when asked (length checks and the
        prepared sets, which store prompt_tokens instead, never need it)."""
        return [IGNORE_INDEX] * self.prompt_tokens + self.input_ids[self.prompt_tokens:]


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """`tokenizer(texts, add_special_tokens=False)["input_ids"]`, straight from a fast tokenizer's Rust core when
    it has one: the same ids (transformers calls the same `encode_batch`), without the attention masks and
    per-text conversions the wrapper adds — about a tenth of a preparation pass on long R1 rows."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def encode_examples(tokenizer, conversations: list[list[dict]]) -> list[EncodedExample]:
    """Tokenize conversations exactly as training feeds them (batched: one call per part)."""
    parts = [training_parts(tokenizer, messages) for messages in conversations]
    if not parts:
        return []
    columns = list(zip(*parts))
    encoded = [token_ids(tokenizer, list(column)) for column in columns]
    examples = []
    for prompt_ids, reasoning_ids, answer_ids in zip(*encoded):
        examples.append(EncodedExample(prompt_ids + reasoning_ids + answer_ids, len(prompt_ids),
                                       len(prompt_ids) + len(reasoning_ids)))
    return examples
