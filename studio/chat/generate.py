"""Base vs LoRA generation: one base model in memory with the adapter attached, both answers from one batch.

A plain LoRA adapter is applied row by row inside the same layers (studio.chat.row_lora: base rows get no delta),
so the two answers cost one `generate` and the memory of one model. On a GPU that batch decodes over a static KV
cache with the decode step compiled into CUDA graphs, for a few batch sizes (BATCH_BUCKETS: a batch is padded up
to one with rows nobody sees) warmed when the model loads, so no question pays compilation; cuDNN attention is
kept out of decoding (it plans anew for every key length). Other adapters (DoRA, trained biases, extra modules)
go through PEFT's `adapter_names=["__base__", "default"]` mixed batch, or two passes where PEFT cannot mix.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from studio.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, THINK_OPEN
from studio.data.template import prompt_text, split_reasoning

BASE, LORA = "base", "lora"
DEMO_MAX_NEW_TOKENS = 256  # the demo model's replies are short; real R1 reasoning needs thousands
GPU_MAX_NEW_TOKENS = 4096


def default_max_new_tokens() -> int:
    """A reply's budget where no model is chosen yet: R1 reasons for thousands of tokens, so GPU_MAX_NEW_TOKENS
    on a GPU; on a CPU (the demo model, whose replies are short) DEMO_MAX_NEW_TOKENS."""
    import torch

    return GPU_MAX_NEW_TOKENS if torch.cuda.is_available() else DEMO_MAX_NEW_TOKENS


# Batch sizes the compiled decode step is made for (each is one compilation): two panes, then batch compare.
BATCH_BUCKETS = (2, 8, 32, 128)
WARM_BUCKETS = (2,)  # compiled at load: a question (a batch compare's first batch compiles its own size)
# A question's static cache is this long (a prompt of up to 1k tokens and the longest reply on a GPU), so every
# question reuses one compiled step; wider batches (batch compare) get a cache as long as their call needs, in
# steps of CACHE_STEP: each (batch, length) is one compilation, and a 128-row batch over a cache longer than it
# needs spends most of each step reading empty cache.
STATIC_CACHE_TOKENS = 1024 + GPU_MAX_NEW_TOKENS
CACHE_STEP = 1024
REDRAW_S = 0.05  # the most often a streaming reply's text is decoded again


@dataclass
class SamplingSettings:
    max_new_tokens: int = DEMO_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE  # 0 means greedy and deterministic
    top_p: float = DEFAULT_TOP_P
    seed: int | None = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max new tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be above 0 and at most 1, not {self.top_p}")

    def generate_kwargs(self) -> dict:
        if self.temperature <= 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": None}


@dataclass
class Reply:
    """One pane's answer as it grows: generated text starts inside the reasoning (after `<think>\\n`)."""

    text: str = ""
    tokens: int = 0
    seconds: float = 0.0
    finished: bool = False
    reasoning_tokens: int | None = None  # known once `</think>` has been generated
    cut: bool = False  # it ended without its end token: the token budget ran out (or Stop was pressed)

    @property
    def split(self):
        return split_reasoning(self.text, started_inside=True)

    @property
    def reasoning(self) -> str:
        return self.split.reasoning

    @property
    def answer(self) -> str:
        return self.split.answer

    @property
    def well_formed(self) -> bool:
        """R1 shape: the reasoning closed with `</think>` and an answer after it."""
        split = self.split
        return split.closed and bool(split.answer)

    @property
    def cut_in_reasoning(self) -> bool:
        """Cut before `</think>`: the budget ended the reasoning, so there is no answer to judge."""
        return self.cut and not self.split.closed

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def display(self) -> str:
        """Text for a chat pane: the opening tag put back so the reasoning folds (gr.Chatbot reasoning_tags)."""
        return f"{THINK_OPEN}\n{self.text}" if self.text else ""

    def to_json(self) -> dict:
        answer_tokens = self.tokens - self.reasoning_tokens if self.reasoning_tokens is not None else 0
        return {"text": self.text, "reasoning": self.reasoning, "answer": self.answer, "tokens": self.tokens,
                "reasoning_tokens": self.reasoning_tokens if self.reasoning_tokens is not None else self.tokens,
                "answer_tokens": answer_tokens, "well_formed": self.well_formed, "cut": self.cut,
                "cut_in_reasoning": self.cut_in_reasoning, "tokens_per_s": round(self.tokens_per_s, 1)}


class RowStreamer:
    """Receives each step's new tokens for every row of a batch (transformers' streamers take one row only)."""

    def __init__(self, tokenizer, rows: int):
        self.tokenizer = tokenizer
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.queue: queue.Queue = queue.Queue()
        self.skip_prompt = True

    def put(self, value) -> None:
        if self.skip_prompt:  # the first call carries the prompt
            self.skip_prompt = False
            return
        step = value.reshape(len(self.ids), -1)[:, -1].tolist()
        for row, token in enumerate(step):
            if self.done[row]:
                continue
            if token == self.tokenizer.eos_token_id:
                self.done[row] = True
            else:
                self.ids[row].append(token)
        self.queue.put("step")

    def end(self) -> None:
        self.queue.put(None)


class StopOnEvent:
    """A stopping criterion that ends generation when the user presses Stop; rows after `rows` (padding up to a
    batch bucket) are finished from the start, so they never keep a batch going."""

    def __init__(self, event: threading.Event, rows: int | None = None):
        self.event, self.rows = event, rows

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
        if self.rows is not None and self.rows < input_ids.shape[0]:
            done[self.rows:] = True
        return done


def batch_bucket(rows: int) -> int:
    """The compiled batch size a batch of `rows` runs as (at most the largest bucket: callers split above it)."""
    return next((bucket for bucket in BATCH_BUCKETS if bucket >= rows), BATCH_BUCKETS[-1])


class ModelBusy(Exception):
    pass


@dataclass
class ChatEngine:
    """Owns the loaded base model and adapter; loading another frees the old one's memory."""

    model_name: str | None = None
    adapter_dir: str | None = None
    model: object = None
    tokenizer: object = None
    mixed_batches: bool = True
    fast: bool = True  # row-masked LoRA, and on a GPU the static cache and compiled decode (False: PEFT, dynamic)
    row_lora: object = None  # studio.chat.row_lora.RowLoRA when the adapter is applied row by row
    peft_reason: str | None = None  # why the adapter goes through PEFT instead
    static_cache: bool = False
    warm_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    # One thread runs every generation: compiled CUDA graphs are recorded per thread, so warm-up and questions
    # must share it.
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "studio-generate"))

    # loading ------------------------------------------------------------------------------------
    def load(self, model_name: str, adapter_dir: str | None) -> None:
        adapter_dir = str(resolve_adapter(adapter_dir)) if adapter_dir else None
        if self.model is not None and (model_name, adapter_dir) == (self.model_name, self.adapter_dir):
            return
        self.unload()
        import torch
        from transformers import AutoModelForCausalLM

        from studio.models import ModelNotFound, detect_device, load_tokenizer, resolve_model

        tokenizer = load_tokenizer(model_name)  # first: its ModelNotFound says how to get a missing model
        device = detect_device()
        dtype = torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32
        options = {}
        if self.fast:  # decoding reads each key/value head once (studio.chat.decode_attention)
            from studio.chat.decode_attention import register

            options["attn_implementation"] = register()
        try:
            model = AutoModelForCausalLM.from_pretrained(resolve_model(model_name), dtype=dtype,
                                                         device_map={"": 0} if device.kind == "cuda" else None,
                                                         **options)
        except OSError as error:
            raise ModelNotFound(f"Could not load the model {model_name!r}: {error}") from None
        self.mixed_batches, self.row_lora, self.peft_reason = True, None, None
        if adapter_dir:
            from studio.chat.row_lora import RowLoRA, applicable

            self.peft_reason = applicable(adapter_dir) if self.fast else "the plain path was asked for"
            if self.peft_reason is None:
                self.row_lora = RowLoRA(model, adapter_dir)
            else:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter_dir)
                config = model.peft_config["default"]
                self.mixed_batches = not getattr(config, "use_dora", False)
        model.eval()
        self.model, self.tokenizer = model, tokenizer
        self.model_name, self.adapter_dir = model_name, adapter_dir
        # PEFT's per-row dispatch cannot be compiled: the static path needs the adapter row by row, or none.
        self.static_cache = self.fast and device.kind == "cuda" and (self.row_lora is not None or not adapter_dir)
        self.warm_seconds = self.warm_up() if self.static_cache else 0.0

    def warm_up(self) -> float:
        """Compile the decode step for WARM_BUCKETS at the static cache's length (seconds it took)."""
        began = time.perf_counter()
        conversation = [{"role": "user", "content": "Warm up."}]
        settings = SamplingSettings(max_new_tokens=8, temperature=0.6, seed=0)
        for bucket in WARM_BUCKETS:
            rows = [(LORA if self.row_lora is not None and index % 2 else BASE, conversation)
                    for index in range(bucket)]
            for _ in self._stream_rows(rows, settings, warming=True):  # compiles, then records the CUDA graphs
                pass
        return round(time.perf_counter() - began, 1)

    def describe(self) -> dict:
        """What answers: the LoRA path, and whether decoding is compiled (for the bench and the Chat tab)."""
        lora = None
        if self.adapter_dir:
            lora = "row-masked" if self.row_lora is not None else f"PEFT ({self.peft_reason})"
        return {"lora": lora, "static_cache": self.static_cache,
                "batch_buckets": list(BATCH_BUCKETS) if self.static_cache else None}

    def memory_bytes(self) -> int:
        """GPU memory the engine holds (its model, adapter and the compiled step's buffers); 0 on CPU."""
        import torch

        return torch.cuda.memory_allocated() if self.model is not None and torch.cuda.is_available() else 0

    def give_gpu_to_training(self) -> None:
        """Free the engine's GPU memory (its model, adapter, cache and compiled step) for a training run; ModelBusy
        while it is answering. Nothing to do on CPU, where training and chat share the machine's memory."""
        import torch

        if self.model is None or not torch.cuda.is_available():
            return
        if not self._lock.acquire(blocking=False):
            raise ModelBusy("The Chat tab is answering on the GPU; press Stop there (or wait for the answer), "
                            "then start training.")
        try:
            self.unload()
        finally:
            self._lock.release()

    def unload(self) -> None:
        if self.model is None:
            return
        self.model = self.tokenizer = self.row_lora = None
        self.model_name = self.adapter_dir = None
        self.static_cache = False
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # generation ---------------------------------------------------------------------------------
    def stream(self, conversations: dict[str, list[dict]], settings: SamplingSettings) -> Iterator[dict[str, Reply]]:
        """Yield {"base": Reply, "lora": Reply} as the answers grow; conversations per side end with the user."""
        sides = [side for side in (BASE, LORA) if side in conversations]
        for replies in self._stream_rows([(side, conversations[side]) for side in sides], settings):
            yield dict(zip(sides, replies))

    def answer(self, conversations: dict[str, list[dict]], settings: SamplingSettings) -> dict[str, Reply]:
        """The finished replies (the last state of `stream`)."""
        replies = {}
        for replies in self.stream(conversations, settings):
            pass
        return replies

    def answer_many(self, conversations: list[list[dict]], settings: SamplingSettings,
                    sides=(BASE, LORA)) -> list[dict[str, Reply]]:
        """Base and LoRA answers to many conversations, in batches of base and LoRA rows together."""
        rows = [(side, conversation) for conversation in conversations for side in sides]
        replies: list[Reply] = []
        for replies in self._stream_rows(rows, settings, live=False):  # nobody watches: text decoded at the end
            pass
        return [dict(zip(sides, replies[i:i + len(sides)])) for i in range(0, len(replies), len(sides))]

    def _stream_rows(self, rows: list[tuple[str, list[dict]]], settings: SamplingSettings,
                     warming: bool = False, live: bool = True) -> Iterator[list[Reply]]:
        if self.model is None:
            raise RuntimeError("load a model first")
        if any(side == LORA for side, _ in rows) and not self.adapter_dir:
            raise ValueError("No adapter loaded: pick a run or an adapter folder for the LoRA side.")
        if not self._lock.acquire(blocking=False):
            raise ModelBusy("The model is answering another prompt; wait for it or press Stop.")
        try:
            self.stop_event.clear()
            replies = [Reply() for _ in rows]
            if self.mixed_batches:
                groups = [list(range(len(rows)))]
            else:  # one pass per side: DoRA and merged weights cannot mix adapters in a batch
                groups = [[i for i, (side, _) in enumerate(rows) if side == wanted] for wanted in (BASE, LORA)]
            if self.static_cache:  # no wider than the largest compiled batch
                widest = BATCH_BUCKETS[-1]
                groups = [group[start:start + widest] for group in groups for start in range(0, len(group), widest)]
            for group in filter(None, groups):
                for _ in self._generate(group, rows, settings, replies, warming, live):
                    yield replies
        finally:
            self._lock.release()

    def _generate(self, group: list[int], rows, settings: SamplingSettings, replies: list[Reply],
                  warming: bool = False, live: bool = True) -> Iterator[None]:
        """Generate `group`'s rows into `replies`, yielding as their text changes (`live`: at most every
        REDRAW_S; otherwise once, at the end)."""
        import torch
        from transformers import StoppingCriteriaList

        tokenizer = self.tokenizer
        prompts = [prompt_text(tokenizer, rows[i][1]) for i in group]
        sides = [rows[i][0] for i in group]
        if self.static_cache:  # padded to a compiled batch size with copies of the first row, finished at once
            padding = batch_bucket(len(prompts)) - len(prompts)
            prompts, sides = prompts + prompts[:1] * padding, sides + [BASE] * padding
        tokenizer.padding_side = "left"  # generation continues from the right edge of every row
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {key: value.to(self.model.device) for key, value in batch.items()}
        streamer = RowStreamer(tokenizer, len(prompts))
        kwargs = dict(**batch, max_new_tokens=settings.max_new_tokens, streamer=streamer,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      stopping_criteria=StoppingCriteriaList([StopOnEvent(self.stop_event, len(group))]),
                      **settings.generate_kwargs())
        if warming:
            kwargs["min_new_tokens"] = settings.max_new_tokens  # every step compiled and recorded
        if self.static_cache:
            kwargs.update(self._static_kwargs(batch["input_ids"].shape[1] + settings.max_new_tokens, len(prompts)))
        if self.row_lora is not None:
            self.row_lora.rows([side == LORA for side in sides])
        elif self.adapter_dir:
            kwargs["adapter_names"] = ["__base__" if side == BASE else "default" for side in sides]
        errors: list[BaseException] = []

        def work():
            try:
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                with torch.inference_mode(), self._attention():
                    self.model.generate(**kwargs)
            except BaseException as error:  # surfaced in the caller's thread
                errors.append(error)
            finally:
                streamer.end()

        started = time.time()
        finished = self._worker.submit(work)
        close_id = tokenizer.convert_tokens_to_ids("</think>")
        item = "step"
        drawn, decoded = 0.0, [0] * len(group)
        try:
            while True:
                item = streamer.queue.get()
                while item is not None and not streamer.queue.empty():  # catch up: decode once per burst
                    item = streamer.queue.get()
                now = time.time()
                # Text is decoded at most every REDRAW_S (and at the end): decoding every row's whole reply on
                # every step held the interpreter lock the generating thread needs, and slowed it.
                redraw = item is None or (live and now - drawn >= REDRAW_S)
                for position, index in enumerate(group):
                    reply, ids = replies[index], streamer.ids[position]
                    count = len(ids)
                    if count != reply.tokens:
                        if reply.reasoning_tokens is None and close_id in ids[reply.tokens:count]:
                            reply.reasoning_tokens = ids.index(close_id, reply.tokens) + 1
                        reply.tokens = count
                        reply.seconds = now - started
                    if redraw and decoded[position] != reply.tokens:
                        reply.text = tokenizer.decode(ids[:reply.tokens], skip_special_tokens=False)
                        decoded[position] = reply.tokens
                    reply.finished = streamer.done[position] or item is None
                    reply.cut = item is None and not streamer.done[position]
                if redraw:
                    drawn = now
                    yield
                if item is None:
                    break
        finally:
            if item is not None:  # the reader went away before the end (page closed): end generation too
                self.stop_event.set()
            finished.result()
        if errors:
            raise errors[0]

    def _static_kwargs(self, needed: int, rows: int) -> dict:
        """generate's arguments for a static cache of `rows` rows: a question's is STATIC_CACHE_TOKENS long (one
        shape, one compiled step, for every question), a wider batch's as long as `needed` in CACHE_STEP steps."""
        from transformers import GenerationConfig

        length = -(-needed // CACHE_STEP) * CACHE_STEP
        if rows <= BATCH_BUCKETS[0]:
            length = max(length, STATIC_CACHE_TOKENS)
        # transformers keeps every later cache at least as long as the longest so far; this call's is what it needs
        self.model._previous_max_cache_length = length
        if hasattr(GenerationConfig(), "max_cache_len"):
            return {"cache_implementation": "static", "max_cache_len": length}
        return {"cache_implementation": "static"}

    def _attention(self):
        """Decoding without cuDNN attention, which builds a new plan for every key length it meets."""
        import torch

        if not torch.cuda.is_available():
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    def stop(self) -> None:
        self.stop_event.set()


def resolve_adapter(path: str | Path) -> Path:
    """A run folder (its adapter/ or latest checkpoint) or an adapter folder -> the adapter folder.

    On a shared server (studio.spaces.multiuser) only folders inside the studio's home are read, and never a
    path with a `..` step: anything else is the same ValueError whether or not it exists.
    """
    from studio.spaces import inside_studio, multiuser

    path = Path(path).expanduser()
    if multiuser() and (".." in path.parts or not inside_studio(path)):
        raise ValueError("On this shared studio an adapter is one of the studio's runs (pick one from the list) or "
                         "a folder inside the studio's home (STUDIO_HOME); other folders of the server are not read.")
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").exists():
            return candidate
    from studio.runs import RunFolder

    for candidate in reversed(RunFolder(path).checkpoints()):  # the newest checkpoint the Trainer finished writing
        if (candidate / "adapter_config.json").exists() and (candidate / "trainer_state.json").exists():
            return candidate
    raise ValueError(f"{path} holds no LoRA adapter (no adapter_config.json in it, in adapter/ or in a checkpoint). "
                     "Pick a finished or stopped run, or a folder that PEFT's save_pretrained wrote.")


def history_without_reasoning(turns: list[dict]) -> list[dict]:
    """Earlier assistant turns as R1 expects them back: answers only (the template also strips them)."""
    cleaned = []
    for turn in turns:
        if turn["role"] == "assistant":
            split = split_reasoning(turn["content"], started_inside=not turn["content"].lstrip().startswith(THINK_OPEN))
            cleaned.append({"role": "assistant", "content": split.answer if split.closed else turn["content"]})
        else:
            cleaned.append(turn)
    return cleaned
