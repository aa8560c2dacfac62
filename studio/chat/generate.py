"""Base vs LoRA generation: one base model in memory with the adapter attached, both answers from one batch.

A plain LoRA adapter is applied row by row inside the same layers (studio.chat.row_lora: base rows get no delta),
so the two answers cost one decoding pass and the memory of one model. That pass is the studio's own loop over a
static KV cache (studio.chat.decode_loop): on a GPU each decode step is a CUDA graph of the compiled step for a
few batch sizes (BATCH_BUCKETS: a batch is padded up to one with rows nobody sees), the question's captured when
the model loads so no question pays compilation, and the host reads each step's tokens behind the next step's
work. cuDNN attention is kept out (it plans anew for every key length). Other adapters (DoRA, trained biases,
extra modules) go through transformers' `generate` and PEFT's `adapter_names=["__base__", "default"]` mixed batch,
or two passes where PEFT cannot mix; `fast=False` is that plain path for every adapter (the tests' reference).
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

from studio.chat.reply_text import readable_text
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
# question reuses one captured step; wider batches (batch compare) get a cache as long as their call needs, in
# steps of CACHE_STEP: each (batch, length) is one compilation, and a 128-row batch over a cache longer than it
# needs spends most of each step reading empty cache. On a CPU nothing is compiled: caches fit the call, in
# steps of CPU_CACHE_STEP.
STATIC_CACHE_TOKENS = 1024 + GPU_MAX_NEW_TOKENS
CACHE_STEP = 1024
CPU_CACHE_STEP = 128
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
    ids: list[int] = field(default_factory=list, repr=False)  # the generated token ids (the end token not kept)

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
        """transformers' streamer call: the prompt first, then each step's tokens as a tensor."""
        if self.skip_prompt:  # the first call carries the prompt
            self.skip_prompt = False
            return
        self.add(value.reshape(len(self.ids), -1)[:, -1].tolist())

    def add(self, step: list[int]) -> bool:
        """One step's token for every row; whether any row is still going."""
        for row, token in enumerate(step):
            if self.done[row]:
                continue
            if token == self.tokenizer.eos_token_id:
                self.done[row] = True
            else:
                self.ids[row].append(token)
        self.queue.put("step")
        return not all(self.done)

    def end(self) -> None:
        self.queue.put(None)


class StopOnEvent:
    """A stopping criterion that ends `generate` when the user presses Stop."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


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
    fast: bool = True  # row-masked LoRA and the studio's decoding loop (False: PEFT and `generate`)
    row_lora: object = None  # studio.chat.row_lora.RowLoRA when the adapter is applied row by row
    float32_lora: bool = False  # the row-masked adapter in float32 as PEFT has it (else the base's dtype: faster)
    peft_reason: str | None = None  # why the adapter goes through PEFT instead
    decode_loop: object = None  # studio.chat.decode_loop.DecodeLoop, unless the adapter goes through PEFT
    static_cache: bool = False  # the decode step is compiled and replayed as CUDA graphs (a GPU)
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
                self.row_lora = RowLoRA(model, adapter_dir, dtype=torch.float32 if self.float32_lora else None)
            else:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter_dir)
                config = model.peft_config["default"]
                self.mixed_batches = not getattr(config, "use_dora", False)
        model.eval()
        self.model, self.tokenizer = model, tokenizer
        self.model_name, self.adapter_dir = model_name, adapter_dir
        # PEFT's per-row dispatch cannot be compiled: the studio's loop needs the adapter row by row, or none.
        self.decode_loop = None
        if self.fast and (self.row_lora is not None or not adapter_dir):
            from studio.chat.decode_loop import DecodeLoop

            self.decode_loop = DecodeLoop(model, capture=device.kind == "cuda")
        self.static_cache = self.decode_loop is not None and self.decode_loop.capture
        self.warm_seconds = self.warm_up() if self.static_cache else 0.0

    def warm_up(self) -> float:
        """Compile and capture the decode step for WARM_BUCKETS at the question cache's length (seconds it took)."""
        began = time.perf_counter()
        conversation = [{"role": "user", "content": "Warm up."}]
        settings = SamplingSettings(max_new_tokens=8, temperature=0.6, seed=0)
        for bucket in WARM_BUCKETS:
            rows = [(LORA if self.row_lora is not None and index % 2 else BASE, conversation)
                    for index in range(bucket)]
            for _ in self._stream_rows(rows, settings):  # compiles the step, then records its CUDA graph
                pass
        return round(time.perf_counter() - began, 1)

    def describe(self) -> dict:
        """What answers: the LoRA path, and whether decoding is compiled (for the bench and the Chat tab)."""
        lora = None
        if self.adapter_dir:
            lora = f"PEFT ({self.peft_reason})"
            if self.row_lora is not None:
                lora = "row-masked, float32" if self.float32_lora else "row-masked"
        return {"lora": lora, "static_cache": self.static_cache,
                "batch_buckets": list(BATCH_BUCKETS) if self.static_cache else None}

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
        self.model = self.tokenizer = self.row_lora = self.decode_loop = None
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
                     live: bool = True) -> Iterator[list[Reply]]:
        if self.model is None:
            raise RuntimeError("load a model first")
        if any(side == LORA for side, _ in rows) and not self.adapter_dir:
            raise ValueError("No adapter loaded: pick a run or an adapter folder for the LoRA side.")
        if not self._lock.acquire(blocking=False):
            raise ModelBusy("The model is answering another prompt; wait for it or press Stop.")
        try:
            self.stop_event.clear()
            replies = [Reply() for _ in rows]
            for group in self._groups(rows):
                for _ in self._generate(group, rows, settings, replies, live):
                    yield replies
            if not live and self.static_cache:  # a batch compare's cache is large: keep the question's only
                self.decode_loop.drop_slots(keep={(BATCH_BUCKETS[0], STATIC_CACHE_TOKENS)})
        finally:
            self._lock.release()

    def prepare_many(self, conversations: list[list[dict]], settings: SamplingSettings,
                     sides=(BASE, LORA), on_compile=None) -> float:
        """Compile and capture the decode steps that `answer_many` of these conversations will run (seconds it
        took; 0.0 where nothing is compiled or all is ready), so that a batch compare can say it and time it apart:
        `on_compile(rows)` is called before a batch size's step is made."""
        if not self.static_cache:
            return 0.0
        rows = [(side, conversation) for conversation in conversations for side in sides]
        began = time.perf_counter()
        if not self._lock.acquire(blocking=False):
            raise ModelBusy("The model is answering another prompt; wait for it or press Stop.")
        try:
            for group in self._groups(rows):
                batch, _ = self._batch(group, rows)
                length = self._cache_length(batch["input_ids"].shape[1] + settings.max_new_tokens,
                                            batch["input_ids"].shape[0])
                ready = self.decode_loop.slots.get((batch["input_ids"].shape[0], length))
                if ready is not None and ready.graph is not None:
                    continue
                if on_compile is not None:
                    on_compile(batch["input_ids"].shape[0])

                def prepare(batch_rows=batch["input_ids"].shape[0], length=length):
                    import torch

                    with torch.inference_mode(), self._attention():
                        self.decode_loop.prepare(batch_rows, length)

                self._worker.submit(prepare).result()  # the thread that replays the graphs records them
        finally:
            self._lock.release()
        return round(time.perf_counter() - began, 1)

    def _groups(self, rows) -> list[list[int]]:
        """The batches `rows` run as: all together (no wider than the largest compiled batch), or one side at a
        time where the adapter cannot be mixed in a batch (DoRA through PEFT)."""
        if self.mixed_batches:
            groups = [list(range(len(rows)))]
        else:
            groups = [[i for i, (side, _) in enumerate(rows) if side == wanted] for wanted in (BASE, LORA)]
        if self.static_cache:
            widest = BATCH_BUCKETS[-1]
            groups = [group[start:start + widest] for group in groups for start in range(0, len(group), widest)]
        return [group for group in groups if group]

    def _batch(self, group: list[int], rows) -> tuple[dict, list[str]]:
        """`group`'s prompts tokenized, left-padded, on the model's device; on a GPU padded to a compiled batch size
        with copies of the first row (finished at once); and each row's side."""
        tokenizer = self.tokenizer
        prompts = [prompt_text(tokenizer, rows[i][1]) for i in group]
        sides = [rows[i][0] for i in group]
        if self.static_cache:
            padding = batch_bucket(len(prompts)) - len(prompts)
            prompts, sides = prompts + prompts[:1] * padding, sides + [BASE] * padding
        tokenizer.padding_side = "left"  # generation continues from the right edge of every row
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {key: value.to(self.model.device) for key, value in batch.items()}, sides

    def _generate(self, group: list[int], rows, settings: SamplingSettings, replies: list[Reply],
                  live: bool = True) -> Iterator[None]:
        """Generate `group`'s rows into `replies`, yielding as their text changes (`live`: at most every
        REDRAW_S; otherwise once, at the end)."""
        import torch
        from transformers import StoppingCriteriaList

        tokenizer = self.tokenizer
        batch, sides = self._batch(group, rows)
        streamer = RowStreamer(tokenizer, len(sides))
        streamer.done[len(group):] = [True] * (len(sides) - len(group))  # padding rows: finished from the start
        if self.row_lora is not None:
            self.row_lora.rows([side == LORA for side in sides])
        if self.decode_loop is not None:
            length = self._cache_length(batch["input_ids"].shape[1] + settings.max_new_tokens, len(sides))
            sampling = settings.generate_kwargs()

            def run():
                def on_tokens(step: list[int]) -> bool:
                    return streamer.add(step) and not self.stop_event.is_set()

                self.decode_loop.generate(batch["input_ids"], batch["attention_mask"], settings.max_new_tokens,
                                          length, sampling["temperature"] or 0.0, sampling["top_p"] or 1.0,
                                          settings.seed, on_tokens)
        else:
            kwargs = dict(**batch, max_new_tokens=settings.max_new_tokens, streamer=streamer,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          stopping_criteria=StoppingCriteriaList([StopOnEvent(self.stop_event)]),
                          **settings.generate_kwargs())
            if self.adapter_dir and self.row_lora is None:
                kwargs["adapter_names"] = ["__base__" if side == BASE else "default" for side in sides]

            def run():
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                self.model.generate(**kwargs)
        errors: list[BaseException] = []

        def work():
            try:
                with torch.inference_mode(), self._attention():
                    run()
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
                        reply.tokens, reply.ids = count, ids
                        reply.seconds = now - started
                    if redraw and decoded[position] != reply.tokens:  # never a "�" of a character cut in two
                        reply.text = readable_text(tokenizer, ids[:reply.tokens])
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

    def _cache_length(self, needed: int, rows: int) -> int:
        """The static cache a call of `rows` rows needing `needed` positions runs over: on a GPU a question's is
        STATIC_CACHE_TOKENS long (one shape, one captured step, for every question), a wider batch's `needed` in
        CACHE_STEP steps, and the decode loop keeps the question's slot and this call's only (a batch compare's
        cache is large); on a CPU `needed` in CPU_CACHE_STEP steps."""
        step = CACHE_STEP if self.static_cache else CPU_CACHE_STEP
        length = -(-needed // step) * step
        question = (BATCH_BUCKETS[0], STATIC_CACHE_TOKENS)
        if self.static_cache and rows <= BATCH_BUCKETS[0] and needed <= STATIC_CACHE_TOKENS:
            length = STATIC_CACHE_TOKENS
        self.decode_loop.drop_slots(keep={question, (rows, length)} if self.static_cache else {(rows, length)})
        return length

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
