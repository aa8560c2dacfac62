"""Parquet (and Hub datasets, which are Arrow tables too): sizes from Arrow, Python objects for the rows kept.

Parquet is read by row group, its rows converted in slices. In Parquet, text columns stored with a dictionary
(as pyarrow writes them by default) are read as dictionaries: a value repeated on many rows is one Python
string, counted once against the dataset limit.

Part of studio.data.readers (see its docstring for the limits every reader keeps)."""

from __future__ import annotations

from itertools import repeat
from pathlib import Path

from studio.data import readers
from studio.data.readers import DatasetUnreadable, _Budget, _too_large

# The limits and _SHARE_CHARS are read through the package (`readers.NAME`) when used, not imported by name:
# one setattr on studio.data.readers (as the tests do) then reaches every reader.

_BATCH_ROWS = 65536  # the most Parquet rows decoded or converted to Python at once
_BATCH_BYTES = 16 << 20  # the Arrow bytes a Parquet batch aims at, from the row group's uncompressed size
# A row group whose text columns are dictionary-encoded is read whole, as dictionaries, when its uncompressed
# size (plus 8 bytes a value for indices and offsets) is at most this: reading a dictionary never expands it.
# Larger row groups are read in batches sized by their uncompressed bytes per row.
_ROW_GROUP_READ_LIMIT = 512 << 20


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        plain = pq.ParquetFile(path)
        meta = plain.metadata
        schema = plain.schema
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DatasetUnreadable(f"{path.name} is not a readable Parquet file ({error}).") from None
    text_leaves = [index for index in range(meta.num_columns) if _is_text_leaf(schema.column(index))]
    files = {frozenset(): plain}
    table_rows = _TableRows("record", meta.num_rows)
    try:
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            chunks = [row_group.column(index) for index in range(meta.num_columns)]
            dictionary = frozenset(chunks[index].path_in_schema for index in text_leaves
                                   if chunks[index].has_dictionary_page)
            estimate = sum(chunk.total_uncompressed_size + 8 * chunk.num_values for chunk in chunks)
            if dictionary and estimate <= _ROW_GROUP_READ_LIMIT:
                if dictionary not in files:
                    files[dictionary] = pq.ParquetFile(path, read_dictionary=sorted(dictionary))
                # Whole: a dictionary is then converted once (a batch of it would carry it all again).
                batches = files[dictionary].read_row_group(group).combine_chunks().to_batches()
            else:
                per_row = max(1, row_group.total_byte_size // max(1, row_group.num_rows))
                batches = plain.iter_batches(batch_size=max(1, min(_BATCH_ROWS, _BATCH_BYTES // per_row)),
                                             row_groups=[group])
            for batch in batches:
                if not table_rows.add(batch):
                    return "parquet", table_rows.budget.rows
                table_rows.budget.flush(group / meta.num_row_groups)
    except Exception as error:  # a damaged row group, or one pyarrow cannot decode
        raise DatasetUnreadable(f"{path.name} is not a readable Parquet file ({error}).") from None
    return "parquet", table_rows.budget.rows


def _is_text_leaf(column) -> bool:
    """A BYTE_ARRAY column of text or bytes (not a decimal stored as bytes): the ones read as dictionaries."""
    logical = str(getattr(column.logical_type, "type", "NONE")).upper()
    return column.physical_type == "BYTE_ARRAY" and logical in ("STRING", "NONE", "JSON", "ENUM", "BSON")


class _TableRows:
    """Rows from Arrow record batches, within the row and dataset limits."""

    def __init__(self, label: str, total: int):
        self.budget = _Budget(label)
        self.label = label
        self.total = total  # rows in the source, for the "not read" message
        self.number = 0
        self._entry_sizes: dict = {}  # a dictionary's buffers -> the sizes of its entries (they repeat per batch)

    def add(self, batch) -> bool:
        """Add the batch's rows; False once the limits stop the reading."""
        import numpy as np
        import pyarrow as pa

        count = batch.num_rows
        if not count:
            return True
        sizes = np.zeros(count, dtype=np.int64)
        costs = np.zeros(count, dtype=np.float64)  # what each row costs held in Python: repeated values shared
        expanded = []  # per column: its characters over the batch
        for column in batch.columns:
            column_sizes, column_costs = self._sizes(column, shared=True)
            sizes += column_sizes
            costs += column_costs
            expanded.append(int(column_sizes.sum()))
        over = sizes > readers.MAX_ROW_CHARS
        budget, first = self.budget, self.number + 1
        room_rows = budget.max_rows - budget.count
        room_chars = budget.max_chars - budget.chars
        spent = np.cumsum(np.where(over, 0.0, costs))
        fits = int(np.searchsorted(spent, room_chars, side="right"))  # rows that fit the characters left
        keep = min(count, room_rows, fits)
        if keep < count:
            over, sizes, costs = over[:keep], sizes[:keep], costs[:keep]
        self.number += keep
        numbers = range(first, first + keep)
        good = np.flatnonzero(~over)
        converted: list = []
        if len(good):
            taken = batch if len(good) == count else batch.take(good) if len(good) < keep else batch.slice(0, keep)
            taken = self._decode_unshared(taken, expanded)
            names = taken.schema.names
            plain = not any(pa.types.is_dictionary(field.type) for field in taken.schema)
            # In slices of about _BATCH_BYTES characters (and _BATCH_ROWS rows at most): the Arrow copies a
            # conversion makes stay small.
            total = np.cumsum(costs[good])
            cuts = {int(cut) for cut in np.searchsorted(
                total, np.arange(1, int(total[-1]) // _BATCH_BYTES + 1) * _BATCH_BYTES, side="right")}
            cuts.update(range(_BATCH_ROWS, len(good), _BATCH_ROWS))
            position = 0
            for end in [*sorted(cut for cut in cuts if 0 < cut < len(good)), len(good)]:
                piece = taken.slice(position, end - position)
                if plain:  # no dictionary to share at the top: Arrow builds the row dicts itself
                    piece = piece.cast(pa.schema([field.with_type(_decoded_type(field.type))
                                                  for field in piece.schema]))
                    converted.extend(piece.to_pylist() if names else [{} for _ in range(end - position)])
                else:
                    values = [_to_python(column) for column in piece.columns]
                    converted.extend([dict(zip(names, row)) for row in zip(*values)] if names
                                     else [{} for _ in range(end - position)])
                position = end
        if len(good) == keep:
            budget.rows.extend(zip(numbers, converted, repeat(None)))
        else:
            rows = iter(converted)
            for number, too_big, size in zip(numbers, over.tolist(), sizes.tolist()):
                budget.rows.append(_too_large(number, self.label, f"{size:,} characters") if too_big
                                   else (number, next(rows), None))
        budget.chars += int(spent[keep - 1]) if keep else 0
        if keep < count:
            budget.stop(first + keep, f"{self.total - first - keep + 1:,} more {self.label}s")
            return False
        return True

    def _decode_unshared(self, batch, expanded: list[int]):
        """The batch with its dictionary columns decoded where sharing their entries saves little (less than
        _SHARE_CHARS: a dictionary page that fell back to plain pages, short repeated labels): a decoded
        column converts faster, Arrow building the row dicts itself. Columns that share a lot stay dictionaries:
        at the top one Python string serves all the rows that use it; nested, they are decoded slice by slice."""
        import pyarrow as pa

        columns, changed = [], False
        for column, chars in zip(batch.columns, expanded):
            decoded = _decoded_type(column.type)
            if decoded != column.type and chars - self._dictionary_chars(column) < readers._SHARE_CHARS:
                column, changed = column.cast(decoded), True
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, names=batch.schema.names) if changed else batch

    def _dictionary_chars(self, array) -> int:
        """The characters of the entries of every dictionary inside the array."""
        import pyarrow as pa

        kind = array.type
        if pa.types.is_dictionary(kind):
            return int(self._entries(array.dictionary).sum())
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            return self._dictionary_chars(array.flatten())
        if pa.types.is_struct(kind):
            return sum(self._dictionary_chars(child) for child in array.flatten())
        if pa.types.is_map(kind):
            return self._dictionary_chars(array.cast(pa.list_(pa.struct([kind.key_field, kind.item_field]))))
        return 0

    def _entries(self, dictionary):
        """The sizes of a dictionary's entries, cached: every batch of a row group carries the same one."""
        key = (tuple(buffer.address if buffer is not None else 0 for buffer in dictionary.buffers()),
               dictionary.offset, len(dictionary))
        entries = self._entry_sizes.get(key)
        if entries is None:
            entries = self._entry_sizes[key] = self._sizes(dictionary)[0]
            if len(self._entry_sizes) > 64:
                self._entry_sizes.pop(next(iter(self._entry_sizes)))
        return entries

    def _sizes(self, array, shared: bool = False):
        """(size of each value, its cost): its characters plus one per other value; the cost shares a dictionary
        entry among the rows that use it (only at the top level, where one Python string serves them all)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = array.type
        length = len(array)
        if pa.types.is_dictionary(kind):
            entries = self._entries(array.dictionary)
            indices = array.indices
            valid = None if not array.null_count else indices.is_valid().to_numpy(zero_copy_only=False)
            positions = indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            sizes = entries[positions] if len(entries) else np.zeros(length, dtype=np.int64)
            if valid is not None:
                sizes = np.where(valid, sizes, 1)
            if not shared:
                return sizes, sizes
            uses = np.bincount(positions, minlength=len(entries))
            costs = sizes / np.maximum(uses[positions], 1) if len(entries) else sizes.astype(np.float64)
            return sizes, costs
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            sizes = pc.utf8_length(array).fill_null(1).to_numpy(zero_copy_only=False).astype(np.int64)
        elif (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
              or pa.types.is_binary_view(kind)):
            sizes = pc.binary_length(array).fill_null(1).to_numpy(zero_copy_only=False).astype(np.int64)
        elif pa.types.is_map(kind):
            return self._sizes(array.cast(pa.list_(pa.struct([kind.key_field, kind.item_field]))))
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
              or pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind)):
            flat = array.flatten()
            parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
            child = self._sizes(flat)[0]
            sizes = np.bincount(parents, weights=child, minlength=length).astype(np.int64) + 1
        elif pa.types.is_struct(kind):
            sizes = np.ones(length, dtype=np.int64)
            for child in array.flatten():
                sizes += self._sizes(child)[0]
        else:
            sizes = np.ones(length, dtype=np.int64)
        return sizes, sizes


def _to_python(array) -> list:
    """array.to_pylist(), except that a dictionary column's entries become one Python object each, shared by the
    rows that use them, and only the entries the rows use are converted. Dictionaries nested inside lists or
    structs are decoded first (their rows' sizes were counted in full against the dataset limit)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        indices = array.indices
        if array.null_count == len(array):
            return [None] * len(array)
        used = pc.unique(indices.drop_null())
        dictionary = array.dictionary
        if len(used) == len(dictionary):
            lookup = _to_python(dictionary)
        else:
            lookup = dict(zip(used.to_pylist(), _to_python(dictionary.take(used))))
        if array.null_count:
            return [None if index is None else lookup[index] for index in indices.to_pylist()]
        return [lookup[index] for index in indices.to_pylist()]
    decoded = _decoded_type(kind)
    if decoded != kind:
        array = array.cast(decoded)
    return array.to_pylist()


def _decoded_type(kind):
    """The type with every dictionary inside it replaced by its value type."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _decoded_type(kind.value_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        field = kind.value_field
        child = pa.field(field.name, _decoded_type(field.type), field.nullable)
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(child, kind.list_size)
        return (pa.large_list if pa.types.is_large_list(kind) else pa.list_)(child)
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(field.name, _decoded_type(field.type), field.nullable) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(kind.key_field.with_type(_decoded_type(kind.key_type)),
                       kind.item_field.with_type(_decoded_type(kind.item_type)))
    return kind
