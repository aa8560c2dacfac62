"""The chat's own decoding loop over a static KV cache: the GPU never waits for the host between steps.

transformers' `generate` waits on the GPU several times a decode step (the streamer's `.tolist()`, the stopping
criteria, the all-rows-finished check): on a 7B at batch 2, about as long as the step itself. Here a step —
the model's forward over one new token a row, the attention mask, temperature/top-p sampling and the write-back
of the chosen tokens — is one captured CUDA graph of the compiled step, replayed each step; the host reads the
tokens of step N while the GPU runs step N+1, so streaming, end of rows and Stop cost no GPU time (at most one
step is computed past the end). On a CPU (the demo model) the same step runs eagerly, with the same cache,
mask and sampler: the CPU tests check this loop token for token against `generate`.

One `DecodeSlot` holds what a (rows, cache length) pair needs — the cache, the step's input buffers, the graph —
so a question reuses the graph captured at load, and a batch compare captures its own once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

WARM_CALLS = 2  # eager calls before capture: compiles, autotunes and allocates what the graph then reuses


def _keep_compiled_kernels() -> None:
    """Compiled kernels go to the studio's cache (STUDIO_HOME/cache/compiled), not the system's temp folder: a
    studio restarted on the same disk then loads the step's kernels instead of compiling them again. Left alone
    where the user set torch's or Triton's own cache folders."""
    import os

    from studio import config as studio_config

    folder = studio_config.STUDIO_HOME / "cache" / "compiled"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))


def choose_tokens(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Next token a row: greedy where temperature is 0, else sampled from the top-p nucleus at that temperature.

    Tensors, not floats, so a captured graph serves every setting. Sampling as `argmax(p / E)` with E ~ Exp(1)
    (the exponential race: the same distribution as drawing from p) needs no host decision and no multinomial.
    `temperature` and `top_p` are (rows, 1). The nucleus is the one transformers' TopPLogitsWarper keeps: the most probable tokens whose cumulative
    probability before them is under top_p (always at least one)."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    scaled = logits / temperature.clamp(min=1e-5)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    race = torch.empty_like(sorted_probs).exponential_(1)
    sampled = order.gather(-1, (sorted_probs / race).argmax(dim=-1, keepdim=True)).squeeze(-1)
    return torch.where(temperature.squeeze(-1) > 0, sampled, greedy)


@dataclass
class DecodeSlot:
    """The static cache and step buffers for `rows` rows over a cache of `length` positions."""

    rows: int
    length: int
    cache: object
    tokens: torch.Tensor  # (rows, 1): the last chosen token of each row, the next step's input
    positions: torch.Tensor  # (rows, 1): each row's position of that token (left padding shifts rows)
    first_column: torch.Tensor  # (rows, 1): a row's first real column (its left padding is never attended)
    temperature: torch.Tensor  # (rows, 1)
    top_p: torch.Tensor  # (rows, 1)
    chosen: torch.Tensor  # (rows,): the tokens the last step chose
    columns: torch.Tensor  # (length,): 0 .. length-1
    graph: object = None


class DecodeLoop:
    """Prefill and decode for one model; `capture` (CUDA) replays each step as one graph."""

    def __init__(self, model, capture: bool):
        self.model = model
        self.capture = capture
        self.device = next(model.parameters()).device
        self.slots: dict[tuple[int, int], DecodeSlot] = {}
        self._forward = self._step_forward
        if capture:
            import torch._dynamo.config as dynamo_config

            _keep_compiled_kernels()

            # each (rows, length) is one compilation of the step; the default limit of 8 would turn later ones
            # back into eager code without a word
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
            self._forward = torch.compile(self._step_forward, fullgraph=True, dynamic=False)

    # slots ---------------------------------------------------------------------------------------
    def slot(self, rows: int, length: int) -> DecodeSlot:
        key = (rows, length)
        if key not in self.slots:
            from transformers import StaticCache

            device = self.device
            cache = StaticCache(config=self.model.config, max_cache_len=length)
            config = self.model.config.get_text_config(decoder=True)
            heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            # allocated now, not at the first update: a captured graph reads these very tensors
            cache.early_initialization(rows, heads, head_dim, next(self.model.parameters()).dtype, device)
            self.slots[key] = DecodeSlot(
                rows, length, cache, tokens=torch.zeros(rows, 1, dtype=torch.long, device=device),
                positions=torch.zeros(rows, 1, dtype=torch.long, device=device),
                first_column=torch.zeros(rows, 1, dtype=torch.long, device=device),
                temperature=torch.zeros(rows, 1, device=device), top_p=torch.ones(rows, 1, device=device),
                chosen=torch.zeros(rows, dtype=torch.long, device=device),
                columns=torch.arange(length, device=device))
        return self.slots[key]

    def drop_slots(self, keep=()) -> None:
        """Free every slot's cache and graph but those of the (rows, length) pairs in `keep`."""
        self.slots = {key: slot for key, slot in self.slots.items() if key in keep}

    # one step ------------------------------------------------------------------------------------
    def _step_forward(self, slot: DecodeSlot) -> torch.Tensor:
        """The model over each row's last token, attending to its real columns up to the one written now (the
        logits; the sampler runs outside the compiled code, where its random draws are plainly graph-safe)."""
        column = slot.cache.layers[0].cumulative_length  # where this step's key and value go
        visible = (slot.columns >= slot.first_column) & (slot.columns <= column)
        logits = self.model(input_ids=slot.tokens, position_ids=slot.positions, attention_mask=visible[:, None, None, :],
                            past_key_values=slot.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits

    def _step(self, slot: DecodeSlot) -> None:
        chosen = choose_tokens(self._forward(slot), slot.temperature, slot.top_p)
        slot.chosen.copy_(chosen)
        slot.tokens.copy_(chosen[:, None])
        slot.positions.add_(1)

    def _capture(self, slot: DecodeSlot) -> None:
        """Compile and record the step for this slot (its state is reset by the prefill that follows)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARM_CALLS):
                self._step(slot)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step(slot)
        slot.graph = graph

    def prepare(self, rows: int, length: int) -> DecodeSlot:
        """The slot for (rows, length), its step compiled and captured (CUDA) if it was not yet."""
        slot = self.slot(rows, length)
        if self.capture and slot.graph is None:
            self._capture(slot)
        return slot

    # a whole generation --------------------------------------------------------------------------
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, length: int,
                 temperature: float, top_p: float, seed: int | None,
                 on_tokens: Callable[[list[int]], bool], forced: torch.Tensor | None = None) -> None:
        """Decode up to `max_new_tokens` a row over a cache of `length` positions. `on_tokens` gets each step's
        tokens (one a row) and returns False to end generation (every row finished, or Stop). Seeded after any
        capture, so a sampled answer does not depend on whether its graph was recorded first.

        `forced` (rows, max_new_tokens), for the bench's guard: each step is fed these tokens instead of the ones
        chosen (teacher forcing), so the chosen tokens say, position by position, whether this loop would have
        picked what another path did."""
        rows, prompt_length = input_ids.shape
        if prompt_length + max_new_tokens > length:
            raise ValueError(f"a cache of {length} positions cannot hold {prompt_length} prompt and "
                             f"{max_new_tokens} new tokens")
        slot = self.prepare(rows, length)
        if seed is not None:
            torch.manual_seed(seed)
        slot.cache.reset()
        slot.temperature.fill_(temperature)
        slot.top_p.fill_(top_p)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # the prompt's keys and values, and its first token: eager (one pass, any prompt length)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                            past_key_values=slot.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        first = choose_tokens(logits, slot.temperature, slot.top_p)
        slot.tokens.copy_(first[:, None] if forced is None else forced[:, :1])
        slot.positions.copy_(positions[:, -1:] + 1)
        slot.first_column.copy_((attention_mask.shape[1] - attention_mask.long().sum(-1, keepdim=True)))
        if not on_tokens(first.tolist()) or max_new_tokens == 1:
            return
        if not self.capture:
            for step in range(max_new_tokens - 1):
                self._step(slot)
                if forced is not None:
                    slot.tokens.copy_(forced[:, step + 1:step + 2])
                if not on_tokens(slot.chosen.tolist()):
                    return
            return
        # Double-buffered reads: step N's tokens are copied to pinned memory behind step N+1's work, and the host
        # waits only for the copy it reads.
        host = [torch.empty(rows, dtype=torch.long, pin_memory=True) for _ in range(2)]
        ready = [torch.cuda.Event() for _ in range(2)]
        pending = None
        for step in range(max_new_tokens - 1):
            slot.graph.replay()
            if forced is not None:
                slot.tokens.copy_(forced[:, step + 1:step + 2])
            buffer = step % 2
            host[buffer].copy_(slot.chosen, non_blocking=True)
            ready[buffer].record()
            if pending is not None:
                ready[pending].synchronize()
                if not on_tokens(host[pending].tolist()):
                    pending = None
                    break
            pending = buffer
        if pending is not None:
            ready[pending].synchronize()
            on_tokens(host[pending].tolist())
        torch.cuda.current_stream().synchronize()  # the step past the end, if one ran, is finished too
