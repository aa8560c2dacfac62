"""`studio bench --chat`: how fast the Chat tab and batch compare answer, beside the plain generation paths.

    python -m studio bench --chat [--model random:qwen2-7b|demo|PATH] [--adapter DIR] [--new-tokens 1024]
                                  [--prompts 64] [--plain-tokens 128] [--float32-lora] [--json]

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
                   plain_tokens: int = 128, guard_tokens: int = 128, float32_lora: bool = False) -> dict:
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
        engine = ChatEngine(float32_lora=float32_lora)
        engine.load(model_path, adapter)
        result.update(load_and_warm_s=round(time.perf_counter() - began, 1), engine=engine.describe(),
                      warm_s=engine.warm_seconds, held_after_load=_memory())
        _log("loaded", {key: result[key] for key in ("load_and_warm_s", "warm_s", "engine")})
        result["first_question"] = _panes(engine, sampled)
        _log("first_question", result["first_question"])
        result["second_question"] = _panes(engine, sampled)
        _log("second_question", result["second_question"])
        if prompts:
            result["batch_compare"] = _batch_compare(engine, prompts, sampled)
            _log("batch_compare", result["batch_compare"])
        result["step_ms"] = _step_ms(engine)
        _log("step_ms", result["step_ms"])
        result.update(_memory())
        began = time.perf_counter()  # a restart on the same disk: the step's kernels come from the studio's cache
        engine.unload()
        engine.load(model_path, adapter)
        result["reload"] = {"load_and_warm_s": round(time.perf_counter() - began, 1), "warm_s": engine.warm_seconds}
        _log("reload", result["reload"])
        greedy = SamplingSettings(max_new_tokens=guard_tokens, temperature=0)
        conversation = [{"role": "user", "content": QUESTION}]
        fast_greedy = engine.answer({BASE: conversation, LORA: conversation}, greedy)
        fast_logits = _next_token_logits(engine, conversation)
        plain = ChatEngine(fast=False)
        plain.load(model_path, adapter)
        plain_greedy = plain.answer({BASE: conversation, LORA: conversation}, greedy)
        plain_logits = _next_token_logits(plain, conversation)
        forced = _forced_agreement(engine, conversation, [plain_greedy[BASE].ids, plain_greedy[LORA].ids])
        engine.unload()
        result["guard"] = {side: {**_agreement(fast_greedy[side].ids, plain_greedy[side].ids),
                                  **_logit_gap(fast_logits[row], plain_logits[row]), **forced[row]}
                           for row, side in enumerate((BASE, LORA))}
        _log("guard", result["guard"])
        if plain_tokens:
            result["plain_peft_mixed_batch"] = _panes(plain, SamplingSettings(max_new_tokens=plain_tokens,
                                                                              temperature=0.6, seed=0))
            _log("plain_peft_mixed_batch", result["plain_peft_mixed_batch"])
            result["bare_generate"] = _bare_generate(plain, plain_tokens)
            _log("bare_generate", result["bare_generate"])
            if torch.cuda.is_available():  # transformers' own compiled path, for the table beside the studio's
                result["bare_generate_static"] = _bare_generate(plain, plain_tokens, static=True)
                _log("bare_generate_static", result["bare_generate_static"])
        plain.unload()
        return result
    finally:
        scratch.cleanup()


def _batch_compare(engine, prompts: int, settings) -> dict:
    """`prompts` prompts on both sides: the decode step for their batch compiled first (timed apart, as the Chat
    tab announces it), then the compare itself."""
    conversations = [[{"role": "user", "content": f"Question {index + 1}: {QUESTION}"}] for index in range(prompts)]
    first = engine.prepare_many(conversations, settings)
    began = time.perf_counter()
    rows = engine.answer_many(conversations, settings)
    wall = time.perf_counter() - began
    engine.prepare_many(conversations, settings)  # its step again (freed with the compare), for step_ms
    tokens = sum(reply.tokens for row in rows for reply in row.values())
    return {"rows": 2 * prompts, "tokens": tokens, "wall_s": round(wall, 1), "tokens_per_s": round(tokens / wall, 1),
            "compile_s": first,
            "cut_in_reasoning": sum(not reply.split.closed for row in rows for reply in row.values())}


def _step_ms(engine, replays: int = 30) -> dict:
    """GPU time of one captured decode step for each slot the engine holds (rows x cache length), and of the
    sampler alone at that width: where a step's time goes, beside the weights' read floor."""
    import torch

    from studio.chat.decode_loop import choose_tokens

    loop = engine.decode_loop
    if loop is None or not loop.capture:
        return {}
    out = {}

    def measure():
        with torch.inference_mode():
            for (rows, length), slot in loop.slots.items():
                slot.cache.reset()  # replays advance the cache: start them from its first column
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(replays):
                    slot.graph.replay()
                end.record()
                end.synchronize()
                logits = torch.randn(rows, engine.model.config.vocab_size, device=slot.tokens.device,
                                     dtype=torch.bfloat16)
                sampler_start, sampler_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                sampler_start.record()
                for _ in range(replays):
                    choose_tokens(logits, slot.temperature, slot.top_p)
                sampler_end.record()
                sampler_end.synchronize()
                out[f"{rows}x{length}"] = {"step_ms": round(start.elapsed_time(end) / replays, 2),
                                           "sampler_ms": round(sampler_start.elapsed_time(sampler_end) / replays, 2)}

    engine._worker.submit(measure).result()
    return out


def _agreement(fast: list[int], plain: list[int]) -> dict:
    """Whether two greedy answers are the same token ids, and where they first differ."""
    same = next((index for index, (x, y) in enumerate(zip(fast, plain)) if x != y), min(len(fast), len(plain)))
    return {"equal": fast == plain, "tokens": len(plain), "same_prefix_tokens": same}


def _forced_agreement(engine, conversation, plain_ids: list[list[int]]) -> list[dict]:
    """The fast loop (its captured step) fed the plain path's greedy tokens for a base and a LoRA row: at how many
    positions it picks the token the plain path picked next. Free-running greedy answers part for good at the
    first near-tie that two kernels round differently (random weights are full of them); this says whether
    every step still computes the same thing."""
    import torch

    from studio.chat.generate import BASE, LORA

    if engine.decode_loop is None or not all(plain_ids):
        return [{}, {}]
    rows = [(BASE, conversation), (LORA, conversation)]
    batch, sides = engine._batch([0, 1], rows)
    steps = max(len(ids) for ids in plain_ids)
    forced = torch.tensor([ids + ids[-1:] * (steps - len(ids)) for ids in plain_ids]
                          + [plain_ids[0] + plain_ids[0][-1:] * (steps - len(plain_ids[0]))] * (len(sides) - 2),
                          device=engine.model.device)
    chosen: list[list[int]] = []
    length = engine._cache_length(batch["input_ids"].shape[1] + steps, len(sides))
    if engine.row_lora is not None:
        engine.row_lora.rows([side == LORA for side in sides])

    def run():
        with torch.inference_mode(), engine._attention():
            engine.decode_loop.generate(batch["input_ids"], batch["attention_mask"], steps, length, 0.0, 1.0, 0,
                                        lambda step: chosen.append(step) or True, forced=forced)

    engine._worker.submit(run).result()
    out = []
    for row, ids in enumerate(plain_ids):
        agree = sum(chosen[position][row] == token for position, token in enumerate(ids))
        out.append({"forced_positions": len(ids), "forced_agree": agree,
                    "forced_agree_pct": round(100 * agree / len(ids), 1)})
    return out


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


def _bare_generate(engine, new_tokens: int, static: bool = False) -> dict:
    """The base model alone through `generate` (PEFT's adapters disabled), batch 1 and 2: a dynamic cache, or
    (`static`) transformers' static cache with its compiled decode step (the first call compiles; the second is
    reported). A failure is reported, not raised: the studio's own figures are already measured."""
    import torch

    from studio.data.template import prompt_text

    tokenizer = engine.tokenizer
    model = engine.model
    text = prompt_text(tokenizer, [{"role": "user", "content": QUESTION}])
    out = {}
    extra = {"cache_implementation": "static"} if static else {}
    for batch in (1, 2):
        ids = tokenizer([text] * batch, return_tensors="pt", add_special_tokens=False).to(model.device)
        try:
            for _ in range(2):  # the second call is the one reported
                began = time.perf_counter()
                with torch.inference_mode(), _adapters_off(model):
                    generated = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                               do_sample=True, temperature=0.6, top_p=0.95,
                                               pad_token_id=tokenizer.pad_token_id, **extra)
                wall = time.perf_counter() - began
        except Exception as error:  # noqa: BLE001 - reported in the bench's output
            out[f"batch_{batch}_error"] = f"{type(error).__name__}: {error}"[:300]
            continue
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
              f"compiling its step before, {batch['compile_s']} s)")
    print(f"  load again in the same process: {result['reload']['load_and_warm_s']} s")
    plain = result.get("plain_peft_mixed_batch")
    if plain:
        print(f"  plain PEFT mixed batch: base {plain['base_tokens_per_s']}, lora {plain['lora_tokens_per_s']} "
              f"tok/s per pane; bare generate {result['bare_generate']}")
    print(f"  guard (greedy, fast vs plain): {result['guard']}")
    if "gpu_peak_gib" in result:
        print(f"  GPU memory: {result['gpu_allocated_gib']} GiB held, peak {result['gpu_peak_gib']} GiB")
