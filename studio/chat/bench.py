"""`studio bench --chat`: how fast the Chat tab and batch compare answer, beside the plain generation paths.

    python -m studio bench --chat [--model random:qwen2-7b|demo|PATH] [--adapter DIR] [--new-tokens 1024]
                                  [--prompts 64] [--plain-tokens 128] [--json]

Loads the chat engine (timing the load and its warm-up), asks one question with both panes streaming (time to
the first token, tokens/s per pane; the first question after loading, then a second), runs a batch compare of
`--prompts` prompts on both sides (aggregate tokens/s), and then, for comparison on the same model, the plain
paths: PEFT's mixed-adapter batch with a dynamic cache (what the chat did before) and bare `generate`. The
guard: greedy answers of the fast engine against the plain PEFT path, token for token. Without --adapter a
random LoRA adapter (rank 32 on every projection) is written for the model, so a random-weight model
(`random:qwen2-7b`, studio.benchmarks.random_model) measures what the real one would.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

QUESTION = ("A train leaves at 9:40 and arrives at 13:05. How long is the journey? Explain your reasoning "
            "step by step.")
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def random_adapter(model_path: str, folder: Path, rank: int = 32, seed: int = 0) -> Path:
    """A LoRA adapter with random A and B for the model at `model_path` (shapes read from a meta-device copy)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from studio.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model_path))
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in skeleton.named_modules():
        if name.rsplit(".", 1)[-1] in TARGET_MODULES and isinstance(module, torch.nn.Linear):
            key = f"base_model.model.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) / \
                module.in_features ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.01
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": model_path, "r": rank,
        "lora_alpha": rank, "lora_dropout": 0.0, "target_modules": list(TARGET_MODULES), "bias": "none",
        "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None,
        "inference_mode": True}), encoding="utf-8")
    return folder


def _panes(engine, settings) -> dict:
    """One question, both panes streaming: time to the first token and each pane's tokens/s."""
    from studio.chat.generate import BASE, LORA

    conversation = [{"role": "user", "content": QUESTION}]
    started = time.perf_counter()
    first = None
    replies = {}
    for replies in engine.stream({BASE: conversation, LORA: conversation}, settings):
        if first is None and any(reply.tokens for reply in replies.values()):
            first = time.perf_counter() - started
    wall = time.perf_counter() - started
    return {"ttft_s": round(first or wall, 3), "wall_s": round(wall, 2),
            **{f"{side}_tokens": reply.tokens for side, reply in replies.items()},
            # a pane's rate over the time it was generating (a reply that ends early is not counted idle)
            **{f"{side}_tokens_per_s": round(reply.tokens_per_s, 1) for side, reply in replies.items()}}


def _log(stage: str, value) -> None:
    """Each stage's figures on stderr as they come (a long run cut short still says what it measured)."""
    print(json.dumps({stage: value}), file=sys.stderr, flush=True)


def _memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 2),
            "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def run_chat_bench(model: str | None = None, adapter: str | None = None, new_tokens: int = 1024, prompts: int = 64,
                   plain_tokens: int = 128, guard_tokens: int = 128) -> dict:
    import torch

    from studio.chat.generate import BASE, LORA, ChatEngine, SamplingSettings
    from studio.train.bench import resolve_bench_model

    model_path = resolve_bench_model(model)
    scratch = tempfile.TemporaryDirectory(prefix="studio-chat-bench-")
    try:
        adapter = adapter or str(random_adapter(model_path, Path(scratch.name) / "adapter"))
        result: dict = {"model": model or model_path, "new_tokens": new_tokens, "prompts": prompts,
                        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
        sampled = SamplingSettings(max_new_tokens=new_tokens, temperature=0.6, seed=0)
        began = time.perf_counter()
        engine = ChatEngine()
        engine.load(model_path, adapter)
        result.update(load_and_warm_s=round(time.perf_counter() - began, 1), engine=engine.describe(),
                      warm_s=engine.warm_seconds, **_memory())
        _log("loaded", {key: result[key] for key in ("load_and_warm_s", "warm_s", "engine")})
        result["first_question"] = _panes(engine, sampled)
        _log("first_question", result["first_question"])
        result["second_question"] = _panes(engine, sampled)
        _log("second_question", result["second_question"])
        if prompts:
            result["batch_compare"] = _batch_compare(engine, prompts, sampled)
            _log("batch_compare", result["batch_compare"])
        result.update(_memory())
        greedy = SamplingSettings(max_new_tokens=guard_tokens, temperature=0)
        conversation = [{"role": "user", "content": QUESTION}]
        fast_greedy = engine.answer({BASE: conversation, LORA: conversation}, greedy)
        fast_logits = _next_token_logits(engine, conversation)
        engine.unload()
        plain = ChatEngine(fast=False)
        plain.load(model_path, adapter)
        plain_greedy = plain.answer({BASE: conversation, LORA: conversation}, greedy)
        plain_logits = _next_token_logits(plain, conversation)
        result["guard"] = {side: {**_agreement(plain.tokenizer, fast_greedy[side].text, plain_greedy[side].text),
                                  **_logit_gap(fast_logits[row], plain_logits[row])}
                           for row, side in enumerate((BASE, LORA))}
        _log("guard", result["guard"])
        if plain_tokens:
            result["plain_peft_mixed_batch"] = _panes(plain, SamplingSettings(max_new_tokens=plain_tokens,
                                                                              temperature=0.6, seed=0))
            _log("plain_peft_mixed_batch", result["plain_peft_mixed_batch"])
            result["bare_generate"] = _bare_generate(plain, plain_tokens)
        plain.unload()
        return result
    finally:
        scratch.cleanup()


def _batch_compare(engine, prompts: int, settings) -> dict:
    """`prompts` prompts on both sides: a first batch of a few tokens (it compiles this batch size, timed apart),
    then the timed one."""
    conversations = [[{"role": "user", "content": f"Question {index + 1}: {QUESTION}"}] for index in range(prompts)]
    began = time.perf_counter()
    engine.answer_many(conversations, type(settings)(max_new_tokens=8, temperature=0.6, seed=0))
    first = time.perf_counter() - began
    began = time.perf_counter()
    rows = engine.answer_many(conversations, settings)
    wall = time.perf_counter() - began
    tokens = sum(reply.tokens for row in rows for reply in row.values())
    return {"rows": 2 * prompts, "tokens": tokens, "wall_s": round(wall, 1), "tokens_per_s": round(tokens / wall, 1),
            "first_batch_s": round(first, 1),
            "cut_in_reasoning": sum(not reply.split.closed for row in rows for reply in row.values())}


def _agreement(tokenizer, fast: str, plain: str) -> dict:
    """Whether two greedy answers are the same tokens, and where they first differ."""
    a, b = tokenizer.encode(fast, add_special_tokens=False), tokenizer.encode(plain, add_special_tokens=False)
    same = next((index for index, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return {"equal": a == b, "tokens": len(b), "same_prefix_tokens": same}


def _next_token_logits(engine, conversation):
    """The logits of the first reply token for a base row and a LoRA row (float32, on the CPU)."""
    import torch

    from studio.data.template import prompt_text

    text = prompt_text(engine.tokenizer, conversation)
    ids = engine.tokenizer([text, text], return_tensors="pt", add_special_tokens=False).to(engine.model.device)
    kwargs = {}
    if engine.row_lora is not None:
        engine.row_lora.rows([False, True])
    elif engine.adapter_dir:
        kwargs["adapter_names"] = ["__base__", "default"]
    with torch.inference_mode():
        return engine.model(**ids, **kwargs).logits[:, -1].float().cpu()


def _logit_gap(fast, plain) -> dict:
    """How far the fast path's logits are from the plain path's, against how far apart the logits are."""
    return {"logits_max_abs_diff": round(float((fast - plain).abs().max()), 5),
            "logits_std": round(float(plain.std()), 5),
            "top1_equal": bool(fast.argmax() == plain.argmax())}


def _bare_generate(engine, new_tokens: int) -> dict:
    """The base model alone through `generate` with a dynamic cache, batch 1 and 2 (PEFT's adapters disabled)."""
    import torch

    from studio.data.template import prompt_text

    tokenizer = engine.tokenizer
    model = engine.model
    text = prompt_text(tokenizer, [{"role": "user", "content": QUESTION}])
    out = {}
    for batch in (1, 2):
        ids = tokenizer([text] * batch, return_tensors="pt", add_special_tokens=False).to(model.device)
        for _ in range(2):  # the second call is the one reported
            began = time.perf_counter()
            with torch.inference_mode(), _adapters_off(model):
                generated = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                           do_sample=True, temperature=0.6, top_p=0.95,
                                           pad_token_id=tokenizer.pad_token_id)
            wall = time.perf_counter() - began
        out[f"batch_{batch}_tokens_per_s_per_row"] = round((generated.shape[1] - ids["input_ids"].shape[1]) / wall, 1)
    return out


def _adapters_off(model):
    import contextlib

    disable = getattr(model, "disable_adapter", None)
    return disable() if disable is not None else contextlib.nullcontext()


def print_chat_bench(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    first, second, batch = result["first_question"], result["second_question"], result.get("batch_compare")
    print(f"{result['model']} on {result['device']}, {result['new_tokens']} new tokens, engine {result['engine']}")
    print(f"  load and warm-up {result['load_and_warm_s']} s (warm-up {result['warm_s']} s)")
    for label, pane in (("first question", first), ("second question", second)):
        print(f"  {label}: first token {pane['ttft_s']} s, base {pane['base_tokens_per_s']} tok/s, "
              f"lora {pane['lora_tokens_per_s']} tok/s per pane, both streaming")
    if batch:
        print(f"  batch compare {batch['rows']} rows: {batch['tokens_per_s']} tok/s aggregate ({batch['wall_s']} s; "
              f"its first batch, compiling, {batch['first_batch_s']} s)")
    plain = result.get("plain_peft_mixed_batch")
    if plain:
        print(f"  plain PEFT mixed batch: base {plain['base_tokens_per_s']}, lora {plain['lora_tokens_per_s']} "
              f"tok/s per pane; bare generate {result['bare_generate']}")
    print(f"  guard (greedy, fast vs plain): {result['guard']}")
    if "gpu_peak_gib" in result:
        print(f"  GPU memory: {result['gpu_allocated_gib']} GiB held, peak {result['gpu_peak_gib']} GiB")
