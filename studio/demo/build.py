"""Build the embedded demo model from scratch: `python -m studio.demo.build`.

Writes `assets/demo-model/` (tokenizer, chat template, weights, generation config, README) and the
sample datasets under `assets/samples/`. Every step is seeded, so a rebuild on the same software gives
the same files. It takes a few minutes on two CPU cores.

The model is a tiny Qwen2 (the architecture of R1-Distill-Qwen) with a byte-level BPE tokenizer that
carries the R1 special tokens and the official R1-Distill chat template. It is pretrained on generated
arithmetic word problems through `studio.data.template.encode_examples`, the same text the studio trains on,
so it answers in the R1 shape: reasoning, `</think>`, then "The answer is 8." — never boxed, which is
the skill the demo fine-tuning set teaches.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from studio.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEMO_MODEL_DIR, SAMPLES_DIR
from studio.demo import data as demo_data

CHAT_TEMPLATE_PATH = Path(__file__).with_name("r1_chat_template.jinja")

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
USER_TOKEN = "<｜User｜>"
ASSISTANT_TOKEN = "<｜Assistant｜>"
# In R1-Distill these two are ordinary added tokens (not "special"): decoding with
# skip_special_tokens=True keeps them, which is how the reasoning stays visible.
THINK_TOKENS = ["<think>", "</think>"]
SPECIAL_TOKENS = [EOS_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, BOS_TOKEN]

# Qwen2's pre-tokenizer split: digits one by one (arithmetic needs that), words with a leading space.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# R1-Distill-Qwen accepts 16k tokens through its tokenizer; the studio's default max length is 4096.
MODEL_MAX_LENGTH = 16384


@dataclass(frozen=True)
class BuildSettings:
    seed: int = demo_data.DEFAULT_SEED
    tokenizer_vocab_size: int = 1536
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 8192
    pretraining_conversations: int = 6000
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 40
    weight_decay: float = 0.01


# --- Tokenizer ------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE over the corpus, with the R1 special tokens, as a transformers tokenizer.

    Byte-level means the 256 byte symbols are all in the vocabulary: any UTF-8 text (Chinese, emoji)
    encodes without an unknown token, just in more pieces when the corpus never showed it.
    """
    from tokenizers import (
        AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers,
    )
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # Qwen2's pipeline: NFC, its split, byte-level. transformers builds exactly this for any qwen2
    # checkpoint (Qwen2Tokenizer), so the tokenizer behaves the same whichever class loads it.
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    added_count = len(SPECIAL_TOKENS) + len(THINK_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - added_count,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    # As in R1-Distill, the special tokens come after the learned vocabulary.
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    # R1-Distill's tokenizer puts a bos in front when asked for special tokens (add_bos_token: true).
    bos_id = backend.token_to_id(BOS_TOKEN)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0",
        pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        chat_template=CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"),
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, output_dir: Path) -> None:
    """Save, then pin two fields of tokenizer_config.json that loading would otherwise fill in.

    For a qwen2 checkpoint transformers 5 loads `Qwen2Tokenizer` whatever the config names, and that
    class adds `<|endoftext|>` as the unknown token unless `unk_token` is explicitly null; a byte-level
    tokenizer has no unknown token. The class name is the generic fast tokenizer, which transformers 4
    also knows.
    """
    tokenizer.save_pretrained(output_dir)
    config_path = output_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["unk_token"] = None
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- Model ----------------------------------------------------------------------------------------


def padded_vocab_size(tokenizer_size: int) -> int:
    """Room for a few more token ids than the tokenizer has, rounded up to a multiple of 128.

    R1-Distill-Qwen does the same (152,064 embedding rows for about 151,665 tokens), so code written
    against the demo cannot assume `len(tokenizer) == config.vocab_size`, and a token a library adds
    on load still has an embedding row.
    """
    return (tokenizer_size // 128 + 1) * 128


def new_model(settings: BuildSettings, tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=padded_vocab_size(len(tokenizer)),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads,
        num_key_value_heads=settings.num_key_value_heads,
        max_position_embeddings=settings.max_position_embeddings,
        rms_norm_eps=1e-6,
        # R1-Distill-Qwen does not tie its output layer to the embeddings; neither does the demo.
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(settings.seed)
    return Qwen2ForCausalLM(config)


def padded_batch(examples, pad_id: int):
    """Right-padded tensors; padding is masked out of attention and loss."""
    import torch

    from studio.data.template import IGNORE_INDEX

    width = max(len(example) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def length_grouped_batches(examples, batch_size: int, steps: int, rng: random.Random):
    """`steps` batches of similar-length examples, so little compute goes to padding."""
    batches = []
    while len(batches) < steps:
        order = list(range(len(examples)))
        rng.shuffle(order)
        # Sort within windows of 50 batches: lengths match inside a batch, order stays random.
        window = batch_size * 50
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda index: len(examples[index]))
            chunk_batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
            rng.shuffle(chunk_batches)
            batches.extend(chunk_batches)
    return [[examples[index] for index in batch] for batch in batches[:steps]]


def pretrain(model, tokenizer, conversations, settings: BuildSettings, log=print) -> list[float]:
    """Next-token training on the replies (prompt masked), AdamW with warmup and cosine decay."""
    import torch

    from studio.data.template import encode_examples

    examples = encode_examples(tokenizer, conversations)
    longest = max(len(example) for example in examples)
    log(f"{len(examples)} training conversations, {sum(map(len, examples))} tokens, longest {longest}")
    rng = random.Random(settings.seed)
    batches = length_grouped_batches(examples, settings.batch_size, settings.steps, rng)

    # No weight decay on norms and biases.
    decay = [parameter for parameter in model.parameters() if parameter.ndim >= 2]
    no_decay = [parameter for parameter in model.parameters() if parameter.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
        betas=(0.9, 0.98),
    )

    def learning_rate_factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    model.train()
    losses = []
    started = time.perf_counter()
    for step, batch in enumerate(batches):
        loss = model(**padded_batch(batch, tokenizer.pad_token_id), use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == len(batches) - 1:
            log(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - started:6.1f}s")
    model.eval()
    return losses


def generation_config(tokenizer):
    from transformers import GenerationConfig

    # DeepSeek's recommended sampling for R1 models.
    return GenerationConfig(
        do_sample=True,
        temperature=DEFAULT_TEMPERATURE,
        top_p=DEFAULT_TOP_P,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --- Checks and output ----------------------------------------------------------------------------


def sample_replies(model, tokenizer, questions: list[str], max_new_tokens: int = 160) -> list[str]:
    """Greedy replies, decoded with special tokens kept so the `</think>` and eos are visible."""
    import torch

    replies = []
    for question in questions:
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            output = model.generate(**prompt_ids, max_new_tokens=max_new_tokens, do_sample=False)
        replies.append(tokenizer.decode(output[0, prompt_ids["input_ids"].shape[1]:]))
    return replies


README_TEMPLATE = """# Demo model

A tiny R1-style model embedded in the studio so that every feature (data checks, LoRA training,
base-vs-LoRA comparison) runs on a laptop CPU with no download. It is not a useful model: it knows
only small arithmetic word problems in English and Chinese.

- Architecture: Qwen2 (as DeepSeek-R1-Distill-Qwen), {parameters:,} parameters, fp32 safetensors.
  {layers} layers, hidden {hidden}, {heads} attention heads ({kv_heads} key/value), MLP {intermediate},
  max positions {max_positions}.
- Tokenizer: byte-level BPE, {vocab} tokens (the model has {embedding_rows} embedding rows, as R1-Distill
  has more rows than tokens), trained on the generated corpus; any UTF-8 text encodes.
  The R1 special tokens are spelled as in R1-Distill: `<｜begin▁of▁sentence｜>` (bos),
  `<｜end▁of▁sentence｜>` (eos and pad), `<｜User｜>`, `<｜Assistant｜>`, and `<think>`, `</think>`.
- Chat template: the official DeepSeek-R1-Distill template, unchanged
  (`studio/demo/r1_chat_template.jinja`). It drops the reasoning of earlier assistant turns and its
  generation prompt ends with `<｜Assistant｜><think>\\n`.
- Behaviour: replies in the R1 shape, reasoning then `</think>` then "The answer is 8." / "答案是：8".
  Greetings get a greeting, other requests a polite refusal. It writes `\\boxed{{}}` only when asked to
  box a number and never saw a word problem answered that way: `assets/samples/demo-train.jsonl`
  teaches that (`The answer is \\boxed{{8}}`), and `assets/samples/demo-heldout.jsonl` holds prompts
  to check it.
- Loading: transformers 5 loads any qwen2 checkpoint's tokenizer as `Qwen2Tokenizer`, R1-Distill-Qwen
  included; `unk_token` is null in `tokenizer_config.json` so that class adds no unknown token.
- Generation defaults (`generation_config.json`): temperature 0.6, top_p 0.95, sampling on.

## How it was built

    python -m studio.demo.build

Everything is generated and seeded (`studio/demo/data.py`, seed {seed}): the corpus of
{conversations} conversations, the tokenizer, and {steps} steps of pretraining (batch {batch_size},
AdamW lr {learning_rate}) on the replies only, through `studio.data.template.encode_examples`; the final
training loss was {final_loss:.3f}. A build takes 3–4 minutes on two free CPU cores, and on the same
software gives the same files, weights included.
"""


def write_readme(output_dir: Path, settings: BuildSettings, model, tokenizer, final_loss: float):
    text = README_TEMPLATE.format(
        parameters=sum(p.numel() for p in model.parameters()),
        layers=settings.num_hidden_layers,
        hidden=settings.hidden_size,
        heads=settings.num_attention_heads,
        kv_heads=settings.num_key_value_heads,
        intermediate=settings.intermediate_size,
        max_positions=settings.max_position_embeddings,
        vocab=len(tokenizer),
        embedding_rows=model.config.vocab_size,
        seed=settings.seed,
        conversations=settings.pretraining_conversations,
        steps=settings.steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        final_loss=final_loss,
    )
    (output_dir / "README.md").write_text(text, encoding="utf-8")


# What a build writes, plus what older transformers versions wrote beside a tokenizer.
BUILD_FILES = [
    "README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
]


def clear_previous_build(output_dir: Path) -> None:
    """Remove the files of an earlier build, and nothing else: --output-dir may point anywhere."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in BUILD_FILES:
        (output_dir / name).unlink(missing_ok=True)


def build(
    output_dir: Path = DEMO_MODEL_DIR,
    samples_dir: Path = SAMPLES_DIR,
    settings: BuildSettings = BuildSettings(),
    log=print,
):
    started = time.perf_counter()
    data = demo_data.make_demo_data(seed=settings.seed, pretraining_size=settings.pretraining_conversations)
    for path in demo_data.write_sample_files(samples_dir, data).values():
        log(f"wrote {path}")

    tokenizer = train_tokenizer(demo_data.tokenizer_training_texts(data), settings.tokenizer_vocab_size)
    log(f"tokenizer: {len(tokenizer)} tokens")
    model = new_model(settings, tokenizer)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    losses = pretrain(model, tokenizer, data.pretraining, settings, log)
    # Mean of the last steps: one batch's loss is noisy.
    final_loss = sum(losses[-20:]) / len(losses[-20:])

    clear_previous_build(output_dir)
    save_tokenizer(tokenizer, output_dir)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(output_dir)
    write_readme(output_dir, settings, model, tokenizer, final_loss)
    for name in BUILD_FILES:
        if (output_dir / name).exists():
            (output_dir / name).chmod(0o644)  # safetensors writes 0600; these are shipped files
    log(f"saved to {output_dir} in {(time.perf_counter() - started) / 60:.1f} minutes")

    questions = [problem.question for problem in data.heldout[:4]]
    for question, reply in zip(questions, sample_replies(model, tokenizer, questions)):
        log(f"\n> {question}\n{reply}")
    return model, tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--samples-dir", type=Path, default=SAMPLES_DIR)
    parser.add_argument("--steps", type=int, default=BuildSettings.steps, help="pretraining steps")
    args = parser.parse_args(argv)
    settings = BuildSettings(steps=args.steps)
    build(args.output_dir, args.samples_dir, settings)


if __name__ == "__main__":
    main()
