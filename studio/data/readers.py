"""Reading raw rows: files (JSONL, JSON, CSV, Parquet) and Hub ids.

`read_raw_rows` gives every row as (number, row, parse error): the number in the source (the 1-based line for
JSONL, the 1-based record otherwise), the parsed row or None, and the error or None. A row that does not parse
keeps its number so the checks report it and the other rows still load; a source that cannot be read at all
raises `DatasetUnreadable`.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import orjson  # several times faster than json.loads; the checks must keep up with a bare parse

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DatasetUnreadable(Exception):
    """The file or Hub dataset cannot be read at all (as opposed to some bad rows)."""


def read_raw_rows(source: str) -> tuple[str, list[tuple[int, object, str | None]]]:
    """(kind, [(number, row or None, parse error or None)]) for a file path or Hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise DatasetUnreadable(f"{source} is a folder: pass a .jsonl, .json, .csv or .parquet file.")
    if path.exists():
        suffix = path.suffix.lower()
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        if suffix not in readers:
            raise DatasetUnreadable(
                f"{path.name}: unsupported file type {suffix or '(none)'}; use one of "
                + ", ".join(FILE_SUFFIXES) + "."
            )
        try:
            return readers[suffix](path)
        except DatasetUnreadable:
            raise
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetUnreadable(f"{path}: cannot read the file ({error}).") from None
    if looks_like_hub_id(source):
        return "hub", _read_hub(source)
    raise DatasetUnreadable(
        f"{source}: no such file, and not a Hub dataset id (owner/name). Check the path."
    )


def _parse_error(number: int, label: str, error: Exception) -> tuple[int, None, str]:
    return number, None, (f"{label} {number} is not valid JSON ({error.msg} at column {error.colno}); "
                          "fix or delete it")


def _read_jsonl(path: Path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    loads = orjson.loads
    try:
        # Fast path: every line parses (a blank line fails too and takes the careful path).
        if lines and not lines[-1].strip():
            lines.pop()
        return "jsonl", [(number, row, None) for number, row in enumerate(map(loads, lines), 1)]
    except orjson.JSONDecodeError:
        pass
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((number, loads(line), None))
        except orjson.JSONDecodeError as error:
            rows.append(_parse_error(number, "line", error))
    return "jsonl", rows


def _read_json(path: Path):
    data = path.read_bytes()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        # A .json file that holds one object per line is JSON Lines under another name.
        if data.lstrip().startswith(b"{") and b"\n" in data.strip():
            return _read_jsonl(path)
        raise DatasetUnreadable(
            f"{path.name} is not valid JSON ({error}). A .json file must hold a list of rows (or an "
            "object with a `data` list); for one object per line use .jsonl."
        ) from None
    if isinstance(document, dict):
        lists = [value for value in document.values() if isinstance(value, list)]
        if "data" in document and isinstance(document["data"], list):
            document = document["data"]
        elif len(lists) == 1:
            document = lists[0]
        else:
            document = [document]
    if not isinstance(document, list):
        raise DatasetUnreadable(f"{path.name}: expected a list of rows, found {type(document).__name__}.")
    return "json", [(number, row, None) for number, row in enumerate(document, 1)]


def _read_csv(path: Path):
    csv.field_size_limit(1 << 30)  # reasoning columns easily exceed the 128 KB default
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DatasetUnreadable(f"{path.name} is empty: a CSV needs a header row naming the fields.")
        for number, values in enumerate(reader, 1):
            if not values:
                continue
            if len(values) != len(header):
                rows.append((number, None,
                             f"record {number} has {len(values)} fields but the header has {len(header)}; "
                             "check quoting of commas and newlines"))
                continue
            rows.append((number, {key: _maybe_json(value) for key, value in zip(header, values)}, None))
    return "csv", rows


def _maybe_json(value: str):
    """CSV cells holding a list of turns are JSON text; decode those, keep other text as is."""
    stripped = value.lstrip()
    if stripped.startswith("["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DatasetUnreadable(f"{path.name} is not a readable Parquet file ({error}).") from None
    return "parquet", [(number, row, None) for number, row in enumerate(table.to_pylist(), 1)]


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.endswith(FILE_SUFFIXES)


def _read_hub(source: str):
    """`owner/name` or `owner/name:split` (default split: train), through `datasets`."""
    repo_id, _, split = source.partition(":")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise DatasetUnreadable(
            f"{repo_id}: the Hugging Face Hub is switched off on this machine (HF_HUB_OFFLINE=1). "
            "Download the dataset where there is network and pass the file instead."
        )
    try:
        import datasets
    except ImportError:
        raise DatasetUnreadable("Reading Hub datasets needs the `datasets` package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(repo_id, split=split or "train")
    except Exception as error:  # network, auth and not-found errors all end here
        raise DatasetUnreadable(
            f"{repo_id}: could not load it from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "Check the id, the split and the network; private datasets need `huggingface-cli login`."
        ) from None
    return [(number, row, None) for number, row in enumerate(dataset, 1)]


# The inverse of _read_jsonl: rows as JSON Lines (the exports write these).
def dumps_jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


__all__ = ["DatasetUnreadable", "FILE_SUFFIXES", "dumps_jsonl", "looks_like_hub_id", "read_raw_rows"]
