"""Training tokens prepared once per dataset and tokenizer, on disk: Arrow, memory-mapped, reused.

A real R1 set is tens of millions of tokens. Held as Python lists of ints they cost about 160 bytes a token
(20k rows at 4096 tokens peaked at 3.7-4.0 GiB before the first step), and every run, resume or new learning
rate tokenized the whole file again. Here the ids are written as int32 into an Arrow file while they are made
(batch by batch, so memory holds one batch), read back memory-mapped through `datasets.Dataset.from_file`, and
found again by a key of everything that changes them:

- the dataset's bytes (SHA-256 of the file) and the field mapping it is read with — fixes make another file, so
  another key; a Hub dataset, which has no file here, is keyed by the content of its rows as read;
- the tokenizer, by content (its vocabulary, merges, special tokens and chat template: studio.data.template
  renders the prompt with it), so the R1-Distill tokenizer built offline and the Hub's own share a key exactly
  when they tokenize alike;
- PREPARED_VERSION, raised whenever the encoding or the rules deciding which rows train change.

max_length is *not* in the key: the ids are kept whole and cut when a row is read, so a run at 512 and a
Data-tab check at 4096 share one set (and the Data tab's length check, which tokenizes exactly as training
does, is what fills it: Start after Check does not tokenize again).

A set is a folder under the cache root: tokens.arrow (columns input_ids, prompt_tokens, reasoning_end, length),
rows.npy (each trainable row's number and its place in tokens.arrow, in file order: repeated rows share one
place) and meta.json. It is written under a temporary name and renamed whole, so a crash never leaves half a
set that reads as whole. The root keeps at most PREPARED_CACHE_MAX_BYTES, the sets used least recently going
first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import weakref
from array import array
from dataclasses import dataclass
from pathlib import Path

from studio import config as studio_config

PREPARED_VERSION = 1
TOKENS_FILE, ROWS_FILE, META_FILE = "tokens.arrow", "rows.npy", "meta.json"
_BATCH_TOKENS = 1 << 20  # ids buffered (as Python ints, ~36 MiB) before a record batch is written
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cache_root() -> Path:
    return Path(os.environ.get("STUDIO_PREPARED_DIR") or studio_config.STUDIO_HOME / "cache" / "prepared")


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides the ids a tokenizer gives: its full definition (a fast tokenizer's JSON: normalizer,
    pre-tokenizer, vocabulary, merges, added tokens), its special tokens and its chat template."""
    try:
        return _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
    else:  # a slow tokenizer: its vocabulary stands in for the definition
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    digest.update(json.dumps([type(tokenizer).__name__, tokenizer.eos_token, tokenizer.bos_token,
                              getattr(tokenizer, "chat_template", None)], default=str).encode("utf-8"))
    fingerprint = digest.hexdigest()
    try:
        _FINGERPRINTS[tokenizer] = fingerprint
    except TypeError:
        pass
    return fingerprint


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([PREPARED_VERSION, *parts], sort_keys=True).encode("utf-8")).hexdigest()[:40]


def source_key(source: str, overrides: dict | None, tokenizer) -> str | None:
    """The key of a local file read with these mapping overrides (None for a Hub id: see content_key)."""
    from studio.data.check_cache import content_key

    content = content_key(source)
    if content is None:
        return None
    mapping = {name: value for name, value in (overrides or {}).items() if value}
    return _key("file", content, mapping, tokenizer_fingerprint(tokenizer))


def content_key(report, tokenizer) -> str:
    """The key of what a report's rows hold (a Hub dataset, which has no file to hash): every row's messages
    and whether it trains."""
    digest = hashlib.sha256()
    errors = report.error_rows
    for record in report.dataset.records:
        digest.update(f"\x00{record.number}:{record.number in errors}".encode())
        for role, content in record.messages:
            digest.update(f"\x01{role}\x02".encode())
            digest.update(content.encode("utf-8", errors="surrogatepass"))
    return _key("rows", digest.hexdigest(), tokenizer_fingerprint(tokenizer))


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass
class PreparedSet:
    """A prepared set, memory-mapped: `tokens` a datasets.Dataset, `rows` an (n, 2) array of (row number,
    place in tokens) for every trainable row in file order."""

    folder: Path
    tokens: object
    rows: object
    meta: dict

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self):
        """Each trainable row's token count, in `rows` order (numpy, read from the length column alone)."""
        import numpy as np

        column = np.asarray(self.tokens.data.column("length").to_numpy(), dtype=np.int64)
        return column[self.rows[:, 1]]

    def example(self, position: int, max_length: int | None = None) -> dict:
        """Row `position` (of `rows`) as training feeds it: input_ids and labels (-100 on the prompt), cut at
        max_length."""
        from studio.data.template import IGNORE_INDEX

        item = self.tokens[int(self.rows[position, 1])]
        ids, prompt = item["input_ids"], item["prompt_tokens"]
        labels = [IGNORE_INDEX] * prompt + ids[prompt:]
        if max_length:
            ids, labels = ids[:max_length], labels[:max_length]
        return {"input_ids": ids, "labels": labels}


def training_limits() -> tuple[int, int, tuple[str, str]] | None:
    """How far training reads a dataset: further than a check on the studio's own machine (the rows are held
    only until tokenized); on a shared server, a check's own limits (None)."""
    from studio import spaces

    if spaces.multiuser():
        return None
    return (studio_config.MAX_TRAIN_DATASET_ROWS, studio_config.MAX_TRAIN_DATASET_CHARS,
            ("STUDIO_MAX_TRAIN_ROWS", "STUDIO_MAX_TRAIN_CHARS"))


def open_set(key: str, root: Path | None = None, limits=None) -> PreparedSet | None:
    """The set stored under `key`, or None (missing, or not whole: a crash while it was written). A set made
    from a read cut short by the dataset limits is only reused under the same `limits`."""
    import numpy as np
    from datasets import Dataset

    folder = (root or cache_root()) / key
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("version") != PREPARED_VERSION:
            return None
        if meta.get("not_read") and meta.get("limits") != (list(limits[:2]) if limits else None):
            return None
        tokens = Dataset.from_file(str(folder / TOKENS_FILE))
        rows = np.load(folder / ROWS_FILE, mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return None
    os.utime(folder / META_FILE)  # used now: the least recently used sets go first
    return PreparedSet(folder, tokens, rows, meta)


# --------------------------------------------------------------------------------------------------
# Writing


class PreparedWriter:
    """Collects a measuring pass's encodings (studio.data.checks.measure_lengths calls add / alias) into a set."""

    def __init__(self, key: str, root: Path | None = None, aliases: tuple[str, ...] = ()):
        import pyarrow as pa

        self.root = root or cache_root()
        self.key, self.aliases = key, tuple(alias for alias in aliases if alias and alias != key)
        self.root.mkdir(parents=True, exist_ok=True)
        self.folder = self.root / f".{key}.{os.getpid()}.{time.monotonic_ns()}.partial"
        self.folder.mkdir()
        self.schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("prompt_tokens", pa.int32()),
                                 ("reasoning_end", pa.int32()), ("length", pa.int32())])
        self._sink = pa.OSFile(str(self.folder / TOKENS_FILE), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._columns: tuple[list, list, list, list] = ([], [], [], [])
        self._buffered = 0
        # The row number of each place in tokens.arrow (rows come in file order), and repeated rows with their
        # first: 8-16 bytes a row, where a dict would hold ~100 (a million short rows: 100 MB).
        self._numbers = array("q")
        self._aliases = array("q")
        self._written = 0
        self._tokens = 0

    def add(self, number: int, example) -> None:
        ids, prompts, ends, lengths = self._columns
        ids.append(example.input_ids)
        prompts.append(example.prompt_tokens)
        ends.append(example.reasoning_end)
        lengths.append(len(example.input_ids))
        self._numbers.append(number)
        self._buffered += len(example.input_ids)
        self._tokens += len(example.input_ids)
        if self._buffered >= _BATCH_TOKENS:
            self._flush()

    def alias(self, number: int, first: int) -> None:
        self._aliases.extend((number, first))

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._columns[3]:
            return
        batch = pa.record_batch([pa.array(column, type=field.type)
                                 for column, field in zip(self._columns, self.schema)], schema=self.schema)
        self._writer.write_batch(batch)
        self._written += batch.num_rows
        self._columns = ([], [], [], [])
        self._buffered = 0

    def finish(self, report, meta: dict) -> PreparedSet:
        """Close the set for the rows `report` trains (those without errors that were measured), store it under
        its key (and its aliases) and open it."""
        import numpy as np

        self._flush()
        self._writer.close()
        self._sink.close()
        errors = report.error_rows
        numbers = np.frombuffer(self._numbers, dtype=np.int64) if self._numbers else np.zeros(0, np.int64)
        places = np.arange(len(numbers), dtype=np.int64)
        order = np.argsort(numbers, kind="stable")
        pairs = np.frombuffer(self._aliases, dtype=np.int64).reshape(-1, 2) if self._aliases else \
            np.zeros((0, 2), np.int64)
        found = np.searchsorted(numbers[order], pairs[:, 1])  # each repeated row's first, by number
        known = found < len(numbers)
        known[known] = numbers[order][found[known]] == pairs[known, 1]
        rows = np.concatenate([np.stack([numbers, places], axis=1),
                               np.stack([pairs[known, 0], places[order][found[known]]], axis=1)])
        if errors:  # measured rows never carry an error; kept as a guard should that change
            rows = rows[~np.isin(rows[:, 0], np.fromiter(errors, dtype=np.int64, count=len(errors)))]
        rows = rows[np.argsort(rows[:, 0], kind="stable")]  # file order
        np.save(self.folder / ROWS_FILE, rows)
        meta = {**meta, "version": PREPARED_VERSION, "key": self.key, "train_rows": int(len(rows)),
                "rows_read": report.rows, "rows_left_out": len(errors), "created": time.time(),
                "tokens": self._tokens}
        (self.folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        target = self.root / self.key
        limits = tuple(meta["limits"]) if meta.get("limits") else None
        # A set already there is kept (another process made the same one) unless these limits would not use it
        # (it was cut by other limits): then this one replaces it.
        _replace_folder(self.folder, target, keep_whole=open_set(self.key, self.root, limits) is not None)
        for alias in self.aliases:  # the same set under another key (a copy of three small files and a link)
            _link_set(target, self.root / alias)
        prune(self.root)
        return open_set(self.key, self.root, limits)

    def abandon(self) -> None:
        try:
            self._writer.close()
            self._sink.close()
        except Exception:  # already closed, or the disk failed: the folder goes anyway
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _whole(folder: Path) -> bool:
    try:
        return json.loads((folder / META_FILE).read_text(encoding="utf-8")).get("version") == PREPARED_VERSION
    except (OSError, ValueError):
        return False


def _replace_folder(fresh: Path, target: Path, keep_whole: bool = True) -> None:
    if keep_whole and _whole(target):  # another process prepared the same set meanwhile: theirs is as good
        shutil.rmtree(fresh, ignore_errors=True)
        return
    if target.exists():  # not whole (cut by a crash, an older version): moved aside, then deleted
        stale = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.partial")
        try:
            target.rename(stale)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    try:
        fresh.rename(target)
    except OSError:  # lost a race to another writer of the same set
        shutil.rmtree(fresh, ignore_errors=True)


def _link_set(target: Path, alias: Path) -> None:
    try:
        if _whole(alias) and os.path.samefile(alias / TOKENS_FILE, target / TOKENS_FILE):
            return
    except OSError:
        pass
    partial = alias.with_name(f".{alias.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in (TOKENS_FILE, ROWS_FILE, META_FILE):
        try:
            os.link(target / name, partial / name)  # the same bytes, no copy
        except OSError:
            shutil.copy2(target / name, partial / name)
    _replace_folder(partial, alias, keep_whole=False)  # an alias of an older copy of the set is replaced


def writer_for(source: str, overrides: dict | None, tokenizer, dataset, root: Path | None = None):
    """A writer for a check that measures `source` with the training's tokenizer, or None when its set is
    stored already or `source` is no local file. The set is also stored under the mapping the check resolved
    (the Train tab passes that one on: "Train on this file as mapped")."""
    key = source_key(source, overrides, tokenizer)
    if key is None or dataset.not_read or open_set(key, root) is not None:
        return None  # a check cut short by its limits is not what training reads: nothing to keep
    resolved = dataset.mapping.to_overrides() if dataset.mapping is not None else None
    return PreparedWriter(key, root, aliases=(source_key(source, resolved, tokenizer),) if resolved else ())


def prepared_for_training(source: str, overrides: dict | None, tokenizer, *, root: Path | None = None,
                          progress=None) -> tuple[PreparedSet, bool]:
    """The prepared set of `source` read with `overrides` for `tokenizer`: (set, whether it was stored already).
    Made when missing: read and checked as `validate` does, rows with errors left out (a row the tokenizer
    fails on included: row_too_large), measured and written in one pass."""
    import sys

    from studio.data.checks import measure_lengths
    from studio.data.validate import validate

    from studio.data.readers import reading_limits

    limits = training_limits()
    key = source_key(source, overrides, tokenizer)
    found = open_set(key, root, limits) if key else None
    if found is not None:
        return found, True
    with reading_limits(*limits) if limits else contextlib.nullcontext():
        report = validate(source, lengths=False, overrides=overrides, progress=progress)
    if key is None:
        key = content_key(report, tokenizer)
        found = open_set(key, root, limits)
        if found is not None:
            return found, True
        writer = PreparedWriter(key, root)
    else:
        writer = writer_for(source, overrides, tokenizer, report.dataset, root) or PreparedWriter(key, root)
    from studio.data.records import paused_gc

    try:
        with paused_gc():  # as check_dataset does: nothing here holds cycles
            measure_lengths(report, tokenizer, sys.maxsize, progress, keep=writer)  # nothing is cut: no flags
        return writer.finish(report, {"source": Path(source).name, "not_read": report.dataset.not_read,
                                      "limits": list(limits[:2]) if limits else None}), False
    except BaseException:
        writer.abandon()
        raise


# --------------------------------------------------------------------------------------------------
# The cache as a whole


def _sets(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")]


def _groups(root: Path) -> list[list[Path]]:
    """The sets, each with its aliases (folders sharing one tokens.arrow)."""
    groups: dict[tuple, list[Path]] = {}
    for folder in _sets(root):
        try:
            stat = (folder / TOKENS_FILE).stat()
            identity = (stat.st_dev, stat.st_ino)
        except OSError:
            identity = ("alone", folder.name)
        groups.setdefault(identity, []).append(folder)
    return list(groups.values())


def _size(group: list[Path]) -> int:
    """Bytes on disk of a set and its aliases (their hard-linked files counted once)."""
    seen, total = set(), 0
    for folder in group:
        for path in folder.iterdir():
            try:
                stat = path.stat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def cache_info(root: Path | None = None) -> dict:
    """{"path", "sets", "bytes"}: what the Train tab and `studio cache` show."""
    root = root or cache_root()
    groups = _groups(root)
    return {"path": str(root), "sets": len(groups), "bytes": sum(_size(group) for group in groups)}


def clear_cache(root: Path | None = None) -> int:
    """Delete every prepared set (and leftovers of interrupted writes); the bytes freed."""
    root = root or cache_root()
    freed = cache_info(root)["bytes"]
    if root.is_dir():
        for path in root.iterdir():
            shutil.rmtree(path, ignore_errors=True)
    return freed


def prune(root: Path | None = None, limit: int | None = None, max_age_s: float | None = None) -> None:
    """Keep the cache under `limit` bytes (PREPARED_CACHE_MAX_BYTES), the sets used least recently first out,
    and (`max_age_s`: a shared server's file time to live) none unused for longer; leftovers of writes
    interrupted a day ago go too."""
    root = root or cache_root()
    limit = studio_config.PREPARED_CACHE_MAX_BYTES if limit is None else limit
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".") and path.name.endswith(".partial"):
                try:
                    if time.time() - path.stat().st_mtime > 86400:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    continue

    def used(group: list[Path]) -> float:
        times = []
        for folder in group:
            try:
                times.append((folder / META_FILE).stat().st_mtime)
            except OSError:
                times.append(0.0)
        return max(times)

    groups = sorted(_groups(root), key=used)
    total = sum(_size(group) for group in groups)
    while groups and (total > limit or (max_age_s is not None and time.time() - used(groups[0]) > max_age_s)):
        oldest = groups.pop(0)
        total -= _size(oldest)
        for folder in oldest:
            shutil.rmtree(folder, ignore_errors=True)
