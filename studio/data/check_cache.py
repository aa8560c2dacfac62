"""Checks of the same bytes with the same settings, done once however many visitors ask at the same time.

On a public Space many visitors check the same file (a sample, a popular dataset) at once. Each check is CPU
work under one interpreter lock, so twenty of them in threads take twenty times as long as one, and a training
run in the same process loses its share of the CPU. Here the first request does the work; requests for the same
content and settings that arrive while it runs wait for its result, and later ones reuse it for as long as some
session still holds a view of that report (a weak reference: the cache never keeps a report alive by itself,
so the per-session memory bounds in studio.spaces still decide what stays in memory).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from studio.data.checks import Report
from studio.data.validate import validate

_CHUNK = 1 << 20


_HASHED: "OrderedDict[tuple, str]" = OrderedDict()  # (path, inode, size, mtime_ns) -> digest, the latest few
_HASHED_KEPT = 64
_HASHED_LOCK = threading.Lock()


def content_key(source: str) -> str | None:
    """A fingerprint of a local file's bytes (None for a Hub id or anything that is not a regular file).

    One check asks for it several times (the shared check, the prepared set and its alias): a file unchanged
    since (same inode, size and modification time to the nanosecond) is not read again."""
    path = Path(source).expanduser()
    try:
        if not path.is_file():
            return None
        stat = path.stat()
        seen = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with _HASHED_LOCK:
            if seen in _HASHED:
                _HASHED.move_to_end(seen)
                return _HASHED[seen]
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    key = f"{digest.hexdigest()}:{path.suffix.lower()}"  # the suffix decides how the bytes are read
    with _HASHED_LOCK:
        _HASHED[seen] = key
        while len(_HASHED) > _HASHED_KEPT:
            _HASHED.popitem(last=False)
    return key


class CheckCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[tuple, Future] = {}
        self._done: weakref.WeakValueDictionary[tuple, Report] = weakref.WeakValueDictionary()

    def validate(self, source: str, *, overrides: dict[str, str] | None = None, progress=None, **settings) -> Report:
        """studio.data.validate.validate, shared between identical requests; the report names `source`."""
        content = content_key(source)
        if content is None:
            return validate(source, overrides=overrides, progress=progress, **settings)
        key = (content, tuple(sorted((overrides or {}).items())), tuple(sorted(settings.items())))
        with self._lock:
            report = self._done.get(key)
            future = self._running.get(key) if report is None else None
            owner = report is None and future is None
            if owner:
                future = self._running[key] = Future()
        if report is not None:
            return _view(report, source)
        if not owner:
            return _view(future.result(), source)
        try:
            report = validate(source, overrides=overrides, progress=progress, **settings)
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                self._running.pop(key, None)
        self._done[key] = report
        future.set_result(report)
        return _view(report, source)

    def __len__(self) -> int:
        return len(self._done)


def _view(report: Report, source: str) -> Report:
    """A report of its own for each request (each session's is freed on its own), under this request's file name
    (another visitor's upload path is never shown), sharing the rows and issues of the one check: reports are
    never changed after they are made (fixes make new ones). The view keeps the shared check alive, so the cache
    can reuse it for exactly as long as some session holds a view."""
    return replace(report, dataset=replace(report.dataset, source=source, _by_number=None), origin=report)


_SHARED: CheckCache | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> CheckCache:
    """The process's cache, made on first use."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = CheckCache()
        return _SHARED
