"""The fast chat path (studio.chat.row_lora, the engine's static-cache generation): the same tokens as the plain
PEFT path, base rows exactly the base model, and the bench's CPU run."""

import json
import shutil

import pytest
import torch

from studio.chat.generate import BASE, LORA, ChatEngine, SamplingSettings
from studio.chat.row_lora import RowLoRA, applicable
from studio.config import SAMPLES_DIR
from studio.runs import COMPLETED
from studio.train.job import TrainingJob, default_config

GREEDY = SamplingSettings(temperature=0, max_new_tokens=96)
PROMPTS = ["Tom has 4 apples and buys 5 more. How many apples does he have now?",
           "What is 12 + 30?", "A box holds 6 eggs. How many eggs are in 3 boxes?"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast-chat") / "demo-run"
    status = TrainingJob(default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(folder), max_steps=30)).run()
    assert status["state"] == COMPLETED, status
    return folder


def conversation(prompt):
    return [{"role": "user", "content": prompt}]


def test_row_lora_rows_match_peft_and_base_rows_match_the_base_model(demo_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.models import resolve_model

    adapter = demo_run / "adapter"
    assert applicable(adapter) is None
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (4, 12))
    plain = AutoModelForCausalLM.from_pretrained(resolve_model("demo")).eval()
    with torch.inference_mode():
        base_logits = plain(ids).logits
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model("demo")), adapter).eval()
    with torch.inference_mode():
        lora_logits = peft(ids).logits
    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo")).eval()
    row_lora = RowLoRA(model, adapter)
    assert len(row_lora.layers) == len([name for name, _ in peft.named_modules() if name.endswith(".lora_A")])
    row_lora.rows([False, True, False, True])
    with torch.inference_mode():
        mixed = model(ids).logits
    assert torch.equal(mixed[0], base_logits[0]) and torch.equal(mixed[2], base_logits[2])
    assert torch.allclose(mixed[1], lora_logits[1], atol=1e-5) and torch.allclose(mixed[3], lora_logits[3], atol=1e-5)
    assert not torch.allclose(mixed[1], base_logits[1], atol=1e-3)  # the adapter does change the LoRA rows


@pytest.mark.parametrize("why, change", [
    ("DoRA", {"use_dora": True}), ("trained biases", {"bias": "lora_only"}),
    ("fully trained modules", {"modules_to_save": ["lm_head"]}), ("per-layer ranks", {"rank_pattern": {"q": 4}}),
])
def test_adapters_the_fast_path_cannot_read_say_why_and_chat_uses_peft(demo_run, tmp_path, why, change):
    adapter = tmp_path / "adapter"
    shutil.copytree(demo_run / "adapter", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **change}))
    assert why in applicable(adapter)
    if why == "trained biases":  # the other edited configs name weights the file lacks: PEFT could not load them
        engine = ChatEngine()
        engine.load("demo", str(adapter))
        assert engine.row_lora is None and engine.describe()["lora"] == f"PEFT ({applicable(adapter)})"


def test_the_fast_engine_answers_token_for_token_as_the_plain_path(demo_run):
    fast, plain = ChatEngine(), ChatEngine(fast=False)
    fast.load("demo", str(demo_run))
    plain.load("demo", str(demo_run))
    assert fast.row_lora is not None and plain.row_lora is None
    for prompt in PROMPTS[:2]:
        sides = {BASE: conversation(prompt), LORA: conversation(prompt)}
        quick, slow = fast.answer(sides, GREEDY), plain.answer(sides, GREEDY)
        assert quick[BASE].text == slow[BASE].text and quick[LORA].text == slow[LORA].text
        assert quick[BASE].text != quick[LORA].text
    many = fast.answer_many([conversation(prompt) for prompt in PROMPTS], GREEDY)
    expected = plain.answer_many([conversation(prompt) for prompt in PROMPTS], GREEDY)
    assert [{side: reply.text for side, reply in row.items()} for row in many] == \
        [{side: reply.text for side, reply in row.items()} for row in expected]


def test_sampled_answers_are_reproducible_with_the_seed(demo_run):
    engine = ChatEngine()
    engine.load("demo", str(demo_run))
    sides = {BASE: conversation(PROMPTS[0]), LORA: conversation(PROMPTS[0])}
    sampled = SamplingSettings(temperature=0.6, max_new_tokens=64, seed=7)
    first, second = engine.answer(sides, sampled), engine.answer(sides, sampled)
    assert first[LORA].text == second[LORA].text and first[BASE].text == second[BASE].text


def test_the_chat_bench_runs_on_cpu_and_reports_every_figure(tmp_path):
    import subprocess
    import sys

    from studio.config import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-m", "studio", "bench", "--chat", "--model", "demo", "--new-tokens", "12",
                           "--prompts", "3", "--plain-tokens", "6", "--json"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["engine"]["lora"] == "row-masked" and result["device"] == "cpu"
    for question in ("first_question", "second_question"):
        assert result[question]["ttft_s"] > 0 and result[question]["lora_tokens"] > 0
    assert result["batch_compare"]["rows"] == 6 and result["batch_compare"]["tokens"] > 0
    assert all(side["equal"] for side in result["guard"].values()), result["guard"]
    assert set(result["bare_generate"]) == {"batch_1_tokens_per_s_per_row", "batch_2_tokens_per_s_per_row"}
    bad = subprocess.run([sys.executable, "-m", "studio", "bench", "--chat", "--new-tokens", "0"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--new-tokens must be at least 1" in bad.stderr + bad.stdout


def test_decoding_attention_reads_each_kv_head_once_and_equals_repeated_heads():
    from studio.chat.decode_attention import decode_attention_forward

    class Layer:
        num_key_value_groups, is_causal = 7, True

    torch.manual_seed(0)
    query, key, value = torch.randn(3, 28, 1, 64), torch.randn(3, 4, 50, 64), torch.randn(3, 4, 50, 64)
    mask = torch.ones(3, 1, 1, 50, dtype=torch.bool)
    mask[0, ..., :10] = False  # left padding
    mask[2, ..., 40:] = False  # cache not filled yet
    repeated = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(7, dim=1), value.repeat_interleave(7, dim=1), attn_mask=mask, scale=0.125)
    output, _ = decode_attention_forward(Layer(), query, key, value, mask, scaling=0.125)
    assert output.shape == (3, 1, 28, 64)
    assert torch.allclose(output, repeated.transpose(1, 2), atol=1e-6)


def test_training_takes_the_gpu_back_from_chat_unless_it_is_answering(demo_run, monkeypatch):
    from studio.chat.generate import ModelBusy

    engine = ChatEngine()
    engine.load("demo", str(demo_run))
    engine.give_gpu_to_training()  # no GPU: chat and training share the machine's memory, nothing to free
    assert engine.model is not None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    assert engine._lock.acquire(blocking=False)  # answering
    try:
        with pytest.raises(ModelBusy, match="press Stop there"):
            engine.give_gpu_to_training()
    finally:
        engine._lock.release()
    engine.give_gpu_to_training()
    assert engine.model is None and engine.row_lora is None


def test_replies_the_budget_cuts_inside_the_reasoning_are_marked_so(demo_run):
    from studio.chat import view
    from studio.chat.compare import Prompt, run_compare

    engine = ChatEngine()
    engine.load("demo", str(demo_run))
    sides = {BASE: conversation(PROMPTS[0]), LORA: conversation(PROMPTS[0])}
    short = engine.answer(sides, SamplingSettings(temperature=0, max_new_tokens=4))
    whole = engine.answer(sides, SamplingSettings(temperature=0, max_new_tokens=400))
    assert short[LORA].cut and short[LORA].cut_in_reasoning and short[LORA].to_json()["cut_in_reasoning"]
    assert "cut inside the reasoning" in view.pane_stats(short[LORA])
    assert not whole[LORA].cut and not whole[LORA].cut_in_reasoning  # it ended with its end token
    result = run_compare(engine, [Prompt(PROMPTS[1], "42"), Prompt(PROMPTS[2], "18")],
                         SamplingSettings(temperature=0, max_new_tokens=4)).to_json()
    assert result["summary"]["lora"]["cut_in_reasoning"] == 2 and result["summary"]["base"]["cut_in_reasoning"] == 2
    frame = view.compare_frame(result)
    assert set(frame["LoRA format"]) == {"✘ cut in reasoning"}
    assert "cut inside the reasoning by the token budget (4 new tokens)" in view.compare_summary_markdown(result)


def test_the_loops_sampler_draws_from_the_nucleus_transformers_keeps():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from studio.chat.decode_loop import choose_tokens

    torch.manual_seed(0)
    logits = torch.randn(1, 50) * 2
    rows = 40000
    temperature, top_p = torch.full((rows, 1), 0.6), torch.full((rows, 1), 0.9)
    drawn = choose_tokens(logits.expand(rows, -1), temperature, top_p)
    warped = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.6)(None, logits.clone()))
    expected = torch.softmax(warped, dim=-1)[0]
    observed = torch.bincount(drawn, minlength=50).float() / rows
    assert set(drawn.unique().tolist()) <= set(torch.nonzero(expected).flatten().tolist())  # never outside it
    assert (observed - expected).abs().max() < 0.01  # and in its proportions (a few standard errors)
    greedy = choose_tokens(logits.expand(3, -1), torch.zeros(3, 1), torch.full((3, 1), 0.9))
    assert greedy.tolist() == [int(logits.argmax())] * 3
    mixed = choose_tokens(logits.expand(2, -1), torch.tensor([[0.0], [1.0]]), torch.full((2, 1), 1e-6))
    assert mixed.tolist() == [int(logits.argmax())] * 2  # a nucleus that small is the top token alone


def test_stop_ends_the_loop_within_a_step_and_rows_end_on_their_own(demo_run):
    engine = ChatEngine()
    engine.load("demo", str(demo_run))
    calls = []
    batch = engine.tokenizer(["Hello there", "What is 2 + 2?"], return_tensors="pt", padding=True)
    engine.decode_loop.generate(batch["input_ids"], batch["attention_mask"], 50, 128, 0.6, 0.95, 0,
                                lambda step: calls.append(step) or len(calls) < 5)
    assert len(calls) == 5 and all(len(step) == 2 for step in calls)  # the step that said stop was the last
    sides = {BASE: conversation(PROMPTS[0]), LORA: conversation(PROMPTS[0])}
    settings = SamplingSettings(temperature=0.6, max_new_tokens=200, seed=3)
    for replies in engine.stream(sides, settings):
        if max(reply.tokens for reply in replies.values()) >= 5:
            engine.stop()
    assert max(reply.tokens for reply in replies.values()) < 60  # Stop is read every step, not at the end
    assert all(reply.finished and reply.cut for reply in replies.values())
    again = engine.answer(sides, settings)  # the next question starts clean: the cache and the Stop are reset
    assert all(reply.tokens > 10 for reply in again.values()) and not again[LORA].cut
