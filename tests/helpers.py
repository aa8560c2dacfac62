"""Helpers several test modules share (no fixtures, no side effects: importing conftest would run it twice)."""


def train_settings(max_steps=6, model="demo", method="lora", batch_size=4, max_length=256, speedups=(), mapping="",
                   save_steps=0, save_minutes=10):
    """The Train tab's settings after the dataset, in its order: model, method, lr, r, alpha, dropout,
    max_length, batch, accum, epochs, warmup, max_steps, targets, scheduler, eval_split, save_steps, seed,
    checkpointing, trackers, speed-ups, field mapping, save_minutes."""
    return [model, method, 2e-3, 8, 16, 0.0, max_length, batch_size, 1, 1, 0.0, max_steps, "all-linear", "cosine",
            0.0, save_steps, 42, "auto", [], list(speedups), mapping, save_minutes]
