"""The rows a run trains on, read from a prepared set (studio.data.prepared) when the Trainer asks for them.

The set is memory-mapped: a run holds its plan (which rows, in which order, cut where) and the rows of the
current batch, not the dataset.
"""

from __future__ import annotations


class TrainingRows:
    """Rows `positions` of a prepared set (positions into its `rows`), each cut at max_length: what the
    Trainer's data loader indexes (a map-style dataset). A slice gives a list of rows."""

    def __init__(self, prepared, positions: list[int], max_length: int):
        self.prepared, self.positions, self.max_length = prepared, list(positions), max_length
        self._lengths = None

    def __len__(self) -> int:
        return len(self.positions)

    def __bool__(self) -> bool:
        return bool(self.positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        return self.prepared.example(self.positions[index], self.max_length)

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    def lengths(self) -> list[int]:
        """Each row's length as fed (cut at max_length), from the set's length column alone."""
        if self._lengths is None:
            every = self.prepared.lengths()
            self._lengths = [min(int(every[position]), self.max_length) for position in self.positions]
        return self._lengths
