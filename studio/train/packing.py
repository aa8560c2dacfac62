"""Rows packed into sequences of at most max_length tokens, for padding-free training.

R1 distillation rows vary from a few hundred to several thousand tokens. One row a step leaves most of a GPU
idle on the short ones; a fixed number of rows a step makes the memory peak depend on how long they happen
to be. Packing by tokens does neither: each pack holds whole rows and at most max_length tokens, so a step
costs what one max_length row costs — the memory estimate for one row of max_length tokens still holds —
and carries about that many tokens, whatever the row lengths.

Packs are filled best-fit decreasing (each row, longest first, goes to the fullest pack it still fits);
rows are never split, so every sequence keeps its own positions and attention (the collator restarts the
positions at each row and the attention kernels keep rows apart: same loss as unpacked, tests/test_packing.py).
TRL's `pack_dataset(..., strategy="bfd")` is the same algorithm for Arrow datasets; the studio keeps its rows as
plain lists and does not depend on TRL, so it is written out here (a few lines).
"""

from __future__ import annotations

import bisect


def pack_rows(rows: list[dict], capacity: int) -> list[dict]:
    """Rows (each with `input_ids`) grouped into packs {"rows": [...]} of at most `capacity` tokens; a row longer
    than `capacity` gets a pack of its own. Deterministic: the same rows in the same order give the same packs."""
    if capacity <= 0:
        raise ValueError(f"packing needs a positive max_length, not {capacity}")
    order = sorted(range(len(rows)), key=lambda index: -len(rows[index]["input_ids"]))
    packs: list[list[dict]] = []
    # (room left, pack index), kept sorted: the first entry with room ≥ the row's length is the best fit.
    room: list[tuple[int, int]] = []
    for index in order:
        row = rows[index]
        length = len(row["input_ids"])
        position = bisect.bisect_left(room, (length, -1))
        if position < len(room):
            left, pack = room.pop(position)
            packs[pack].append(row)
            left -= length
        else:
            packs.append([row])
            pack, left = len(packs) - 1, capacity - length
        if left > 0:
            bisect.insort(room, (left, pack))
    return [{"rows": pack} for pack in packs]


def flatten_packs(features: list[dict]) -> list[dict]:
    """The rows of a batch of packs (plain rows pass through: evaluation batches are not packed)."""
    return [row for feature in features for row in feature.get("rows", (feature,))]
