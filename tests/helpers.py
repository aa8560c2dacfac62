"""Helpers several test modules share (no fixtures, no side effects: importing conftest would run it twice)."""


def train_settings(max_steps=6, model="demo", method="lora", batch_size=4, max_length=256, speedups=(), mapping="",
                   save_steps=0, save_minutes=10):
    """The Train tab's settings after the dataset, in its order: model, method, lr, r, alpha, dropout,
    max_length, batch, accum, epochs, warmup, max_steps, targets, scheduler, eval_split, save_steps, seed,
    checkpointing, trackers, speed-ups, field mapping, save_minutes."""
    return [model, method, 2e-3, 8, 16, 0.0, max_length, batch_size, 1, 1, 0.0, max_steps, "all-linear", "cosine",
            0.0, save_steps, 42, "auto", [], list(speedups), mapping, save_minutes]


def huge_model(folder):
    """A model folder holding only a config.json, of a model far too big for any device: the estimate says it
    will not fit (an estimate needs no weights)."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 32768, "intermediate_size": 131072, "num_hidden_layers": 256,
        "num_attention_heads": 256, "num_key_value_heads": 32, "vocab_size": 152064, "tie_word_embeddings": False}))
    return folder


def no_valid_rows(path):
    """A JSONL file whose every row has an error (a question with no assistant turn: bad_roles)."""
    import json
    from pathlib import Path

    path = Path(path)
    rows = [{"messages": [{"role": "user", "content": f"What is {n} + {n}?"}]} for n in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def snapshot(folder) -> dict:
    """Every path under `folder` (itself included) with its modification time and size: equal before and after
    means nothing was touched."""
    from pathlib import Path

    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in [folder, *folder.rglob("*")]}


def run_async(coroutine):
    """Run a coroutine to its end from any test: in a thread of its own, since the browser tests' Playwright may
    leave an event loop running in the main thread (asyncio.run refuses to start inside one)."""
    from concurrent.futures import ThreadPoolExecutor
    import asyncio

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_for(condition, timeout=20.0, message="condition", every=0.2):
    """Poll `condition` until it holds; an AssertionError naming `message` after `timeout` seconds."""
    import time

    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(every)
