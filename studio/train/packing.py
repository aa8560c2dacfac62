"""Rows packed into sequences of at most max_length tokens, for padding-free training.

R1 distillation rows vary from a few hundred to several thousand tokens. One row a step leaves most of a GPU
idle on the short ones; a fixed number of rows a step makes the memory peak depend on how long they happen
to be. Packing by tokens does neither: each pack holds whole rows and at most max_length tokens, so a step
costs what one max_length row costs — the memory estimate for one row of max_length tokens still holds —
and carries about that many tokens, whatever the row lengths.

Packs are filled best-fit decreasing (each row, longest first, goes to the fullest pack it still fits);
rows are never split, so every sequence keeps its own positions and attention (the collator restarts the
positions at each row and the attention kernels keep rows apart: same loss as unpacked, tests/test_packing.py).
TRL's `pack_dataset(..., strategy="bfd")` is the same algorithm, but it rewrites the Arrow dataset into packed
rows; here the plan is made from the prepared set's length column alone and the rows are read, memory-mapped,
when their pack is (a few lines, and no TRL dependency).
"""

from __future__ import annotations

import bisect


def pack_lengths(lengths, capacity: int) -> list[list[int]]:
    """Row indices grouped into packs of at most `capacity` tokens, from the rows' lengths alone (a prepared
    set's length column: no row is read to plan); a row longer than `capacity` gets a pack of its own.
    Deterministic: the same lengths in the same order give the same packs."""
    if capacity <= 0:
        raise ValueError(f"packing needs a positive max_length, not {capacity}")
    lengths = [int(length) for length in lengths]
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    packs: list[list[int]] = []
    # (room left, pack index), kept sorted: the first entry with room ≥ the row's length is the best fit.
    room: list[tuple[int, int]] = []
    for index in order:
        length = lengths[index]
        position = bisect.bisect_left(room, (length, -1))
        if position < len(room):
            left, pack = room.pop(position)
            packs[pack].append(index)
            left -= length
        else:
            packs.append([index])
            pack, left = len(packs) - 1, capacity - length
        if left > 0:
            bisect.insort(room, (left, pack))
    return packs


def pack_rows(rows, capacity: int) -> list[dict]:
    """Rows (each with `input_ids`) grouped into packs {"rows": [...]} of at most `capacity` tokens."""
    return [{"rows": [rows[index] for index in pack]}
            for pack in pack_lengths([len(rows[index]["input_ids"]) for index in range(len(rows))], capacity)]


class PackedRows:
    """Packs of a row view (studio.train.rows.TrainingRows), each row read when its pack is: what the Trainer
    iterates when packing is on."""

    def __init__(self, rows, capacity: int):
        self.rows = rows
        self.packs = pack_lengths(rows.lengths(), capacity)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> dict:
        return {"rows": [self.rows[row] for row in self.packs[index]]}


def flatten_packs(features: list[dict]) -> list[dict]:
    """The rows of a batch of packs (plain rows pass through: evaluation batches are not packed)."""
    return [row for feature in features for row in feature.get("rows", (feature,))]
