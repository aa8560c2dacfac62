"""JSON: a list of rows (or an object holding one), read element by element.

A JSON list is read a window of whole elements (at most 1 MB) at a time, never the whole document at once: a
window ends at a comma between elements (found backwards, proved by the window parsing as a list), and an
element too long for a window is found by a scan of strings and brackets (one regular-expression match,
however long), so its size is known before it is parsed.

Part of studio.data.readers (see its docstring for the limits every reader keeps)."""

from __future__ import annotations

import mmap
import os
import re
from itertools import repeat
from pathlib import Path

import orjson

from studio.data import readers
from studio.data.readers import _BOM, DatasetUnreadable, RawRows, _Budget, _parse_error, _size, _too_large
from studio.data.readers.jsonl import _estimate, _read_jsonl

# The limits are read through the package (`readers.NAME`) when used, not imported by name: one setattr on
# studio.data.readers (as the tests do) then reaches every reader.

# A JSON string, or one structural character: [ { (group 1), ] } (group 2), a comma (group 3).
_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|([\[{])|([\]}])|(,)', re.S)
_STRING = re.compile(rb'\s*("[^"\\]*+(?:\\.[^"\\]*+)*+")\s*:', re.S)
_NON_SPACE = re.compile(rb"\S")


def _value_pattern(depth: int) -> bytes:
    """A JSON value nested at most `depth` containers deep, matched without backtracking (possessive)."""
    string = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    inner = rb"(?!)"
    for _ in range(depth):
        body = rb'(?:[^\[\]{}"]++|' + string + rb"|" + inner + rb")*+"
        inner = rb"(?:\[" + body + rb"\]|\{" + body + rb"\})"
    return rb"(?:" + string + rb"|" + inner + rb'|[^\[\]{}",\s]++)'


# One member of a list: its value (group 1) and the comma after it (group 2) or the closing bracket. One C-speed
# match per member, even a 99 MB one; a member nested deeper than 6 levels takes the token loop (_member_end).
_ITEM = re.compile(rb"\s*(" + _value_pattern(6) + rb")\s*(?:(,)|\])", re.S)
_EMPTY_LIST = re.compile(rb"\s*\]")
# One `"key": value` member of an object, the same way: key and value (groups 1, 2), then a comma (group 3) or }.
_PAIR = re.compile(rb'\s*("[^"\\]*+(?:\\.[^"\\]*+)*+")\s*:\s*(' + _value_pattern(6) + rb")\s*(?:(,)|\})", re.S)
_EMPTY_OBJECT = re.compile(rb"\s*\}")


class _Unclosed(Exception):
    pass


def _member_end(buf, position: int) -> tuple[int, int]:
    """(where the member starting at `position` ends, where the next one starts: negative, minus the position past
    the closing bracket, when it was the last), by a scan of strings and brackets. Raises _Unclosed at the end."""
    depth = 0
    for match in _TOKEN.finditer(buf, position):
        kind = match.lastindex
        if kind is None:
            continue
        if kind == 1:
            depth += 1
        elif kind == 2:
            if depth == 0:
                return match.start(), -match.end()
            depth -= 1
        elif depth == 0:
            return match.start(), match.end()
    raise _Unclosed


def _members(buf, opened: int, state: dict):
    """(start, end) of each member of the list or object opened at `opened` (an object's members are its
    `"key": value` pairs); state["end"] is then the position just past its closing bracket."""
    position = opened + 1
    if buf[opened] == ord("["):
        empty = _EMPTY_LIST.match(buf, position)
        if empty is not None:
            state["end"] = empty.end()
            return
        while True:
            found = _ITEM.match(buf, position)
            if found is not None:
                yield found.start(1), found.end(1)
                position = found.end()
                if found.start(2) < 0:
                    state["end"] = position
                    return
                continue
            start = position
            end, position = _member_end(buf, start)
            yield start, end
            if position < 0:
                state["end"] = -position
                return
    empty = _EMPTY_OBJECT.match(buf, position)
    if empty is not None:
        state["end"] = empty.end()
        return
    while True:
        found = _PAIR.match(buf, position)
        if found is not None:
            yield found.start(1), found.end(2)
            position = found.end()
            if found.start(3) < 0:
                state["end"] = position
                return
            continue
        end, after = _member_end(buf, position)
        yield position, end
        if after < 0:
            state["end"] = -after
            return
        position = after


def _read_json(path: Path):
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= readers.MAX_ROW_CHARS:
            # A small file holds no row over the limit: one parse, and the element reader only when it fails.
            data = handle.read()
            try:
                document = orjson.loads(data)
            except orjson.JSONDecodeError:
                return _scan_json(path, data)
            return "json", _document_rows(path, document)
        buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return _scan_json(path, buf)
        finally:
            try:
                buf.close()
            except BufferError:  # a match object still points into it: the collector closes it
                pass


def _document_rows(path: Path, document) -> RawRows:
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
    rows = RawRows()
    rows.extend(zip(range(1, len(document) + 1), document, repeat(None)))
    return rows


def _not_json(path: Path, why: str) -> DatasetUnreadable:
    return DatasetUnreadable(
        f"{path.name} is not valid JSON ({why}). A .json file must hold a list of rows (or an object with a "
        "`data` list); for one object per line use .jsonl.")


def _scan_json(path: Path, buf):
    first = _NON_SPACE.search(buf, 3 if buf[:3] == _BOM else 0)
    if first is None:
        raise DatasetUnreadable(f"{path.name} is empty: a .json file must hold a list of rows.")
    start = first.start()
    opener = buf[start]
    if opener == ord("["):
        return "json", _array_rows(path, buf, start)
    if opener != ord("{"):
        if len(buf) > readers.MAX_ROW_BYTES:
            raise _not_json(path, "it does not start with [ or {")
        try:
            document = orjson.loads(buf[:])
        except orjson.JSONDecodeError as error:
            raise _not_json(path, str(error)) from None
        return "json", _document_rows(path, document)
    try:
        members = _object_members(path, buf, start)
    except _Unclosed:
        if b"\n" in buf[start:start + readers.MAX_ROW_BYTES]:
            return _read_jsonl(path)  # one object per line, the last one broken: JSON Lines under another name
        raise _not_json(path, f"the object at byte {start:,} is never closed") from None
    lists, data_rows, end = members
    after = _NON_SPACE.search(buf, end)
    if after is not None:
        if buf[after.start()] == ord("{"):
            return _read_jsonl(path)  # one object per line: JSON Lines under another name
        raise _not_json(path, f"unexpected data after the object, at byte {after.start():,}")
    if data_rows is not None:
        return "json", data_rows
    if len(lists) == 1:
        return "json", _array_rows(path, buf, next(iter(lists.values())), top=False)
    return "json", _elements(path, buf, [("one", start, end)])  # the object is the one row


_VALUE = re.compile(_value_pattern(6), re.S)
_SIGNATURE = re.compile(rb'\s*(\{\s*"[^"\\]{0,60}"\s*:)')
_AFTER_MEMBER = re.compile(rb"\s*([,}])")


def _object_members(path: Path, buf, opened: int):
    """({key: start} of the members whose value is a list, the rows of the `data` list or None, the position
    past the object). A list is stepped over a window at a time; the `data` one is read as it is met."""
    lists: dict = {}
    data_rows = None
    empty = _EMPTY_OBJECT.match(buf, opened + 1)
    if empty is not None:
        return lists, None, empty.end()
    position = opened + 1
    while True:
        key = _STRING.match(buf, position)
        value = _NON_SPACE.search(buf, key.end()) if key is not None else None
        if value is None:
            break  # not a `"key": value` pair: the exact scan below decides
        if buf[value.start()] == ord("["):
            name = orjson.loads(buf[key.start(1):key.end(1)])
            state: dict = {}
            if name == "data" and data_rows is None:
                data_rows = _array_rows(path, buf, value.start(), top=False, state=state)
                if data_rows.not_read:
                    return lists, data_rows, len(buf)  # stopped inside it: the rest is not looked at
            else:
                for _ in _windows(buf, value.start(), state, False):
                    pass
            lists[name] = value.start()
            ended = state.get("end")
        else:
            found = _VALUE.match(buf, value.start())
            ended = found.end() if found is not None else None
        separator = _AFTER_MEMBER.match(buf, ended) if ended is not None else None
        if separator is None:
            break
        position = separator.end()
        if separator.group(1) == b"}":
            return lists, data_rows, position
    state = {}
    for _ in _members(buf, opened, state):  # malformed somewhere: scan exactly (raises _Unclosed at the end)
        pass
    raise _not_json(path, f"the object at byte {opened:,} is not a valid JSON object")


def _array_rows(path: Path, buf, opened: int, top: bool = True, state: dict | None = None) -> RawRows:
    state = {} if state is None else state
    try:
        # A top-level list streams its rows to the sink as it goes; a list inside an object does not: what
        # follows it can still make the file JSON Lines, read again from the start.
        rows = _elements(path, buf, _windows(buf, opened, state, top), stream=top)
    except _Unclosed:
        raise _not_json(path, f"the list that opens at byte {opened:,} is never closed: the file ends inside "
                              "it") from None
    if top and "end" in state and not rows.not_read:
        after = _NON_SPACE.search(buf, state["end"])
        if after is not None:
            raise _not_json(path, f"unexpected data after the list, at byte {after.start():,}")
    return rows


_WINDOW_BYTES = 1 << 20  # the list is parsed a window of whole elements at a time, up to this many bytes


def _windows(buf, opened: int, state: dict, top: bool):
    """The members of the list opened at `opened`, as ("many", start, end, rows): a window of whole small
    elements parsed at once, or ("one", start, end): one element, unparsed. state["end"]: past the list.

    A window ends at a comma found backwards from its size limit; that the text up to there parses as a list
    proves the comma is between elements (a cut inside a string or a nested value leaves it unclosed). When
    three commas fail (a long element full of commas), one element is found exactly, then windows go on."""
    loads = orjson.loads
    position = opened + 1
    first = _SIGNATURE.match(buf, position)
    # How elements begin (`{"conversation":`): a comma before that is most likely between elements.
    signature = first.group(1) if first is not None else None
    exact_until = -1  # after a window that did not parse, elements are found one by one up to its end
    while True:
        window = min(_WINDOW_BYTES, readers.MAX_ROW_CHARS)  # every element of a window is under the row limit
        parsed = None
        close = buf.rfind(b"]") if top and len(buf) - position <= window and position >= exact_until else -1
        if close >= position and _NON_SPACE.search(buf, close + 1) is None:  # the rest of the list, to its end
            try:
                parsed = loads(b"[" + buf[position:close] + b"]")
            except orjson.JSONDecodeError:
                parsed = None
            if parsed or (parsed == [] and position == opened + 1):
                yield "many", position, close, parsed
                state["end"] = close + 1
                return
            exact_until = len(buf)
        elif len(buf) - position > window and position >= exact_until:
            limit = position + window
            cuts = []
            if signature is not None:
                at = buf.rfind(signature, position, limit)
                comma = buf.rfind(b",", position, at) if at > position else -1
                if comma >= 0 and _NON_SPACE.search(buf, comma + 1, at) is None:
                    cuts.append(comma)
            cut = limit
            while len(cuts) < 3 and (cut := buf.rfind(b",", position, cut)) >= 0:
                cuts.append(cut)
            for cut in dict.fromkeys(cuts):
                try:
                    parsed = loads(b"[" + buf[position:cut] + b"]")
                    break
                except orjson.JSONDecodeError:
                    parsed = None
            if parsed:
                yield "many", position, cut, parsed
                position = cut + 1
                continue
            exact_until = limit
        found = _ITEM.match(buf, position)
        if found is not None:
            yield "one", found.start(1), found.end(1)
            position = found.end()
            if found.start(2) < 0:
                state["end"] = position
                return
            continue
        empty = _EMPTY_LIST.match(buf, position) if position == opened + 1 else None
        if empty is not None:
            state["end"] = empty.end()
            return
        start = position
        end, position = _member_end(buf, start)
        yield "one", start, end
        if position < 0:
            state["end"] = -position
            return


def _exact(buf, start: int, end: int):
    """("one", start, end) for each element of a window (between two element boundaries)."""
    position = start
    while position < end:
        found = _ITEM.match(buf, position)
        if found is not None:
            yield "one", found.start(1), found.end(1)
            position = found.end()
            if found.start(2) < 0:
                return
            continue
        element_start = position
        stop, after = _member_end(buf, element_start)
        yield "one", element_start, stop
        if after < 0:
            return
        position = after


def _elements(path: Path, buf, items, stream: bool = False) -> RawRows:
    """The rows of a JSON list from _windows' items; an element over MAX_ROW_BYTES is left unparsed, one over
    MAX_ROW_CHARS is parsed only to count it. With `stream`, the rows go to the sink (if any) window by window."""
    budget = _Budget("record")
    rows = budget.rows
    append, loads = rows.append, orjson.loads
    number = 0

    def one(number: int, start: int, end: int) -> bool:
        """Read one element; False when the limits stop the reading here."""
        length = end - start
        if length > readers.MAX_ROW_BYTES:
            if not budget.room(1, 0):
                budget.stop(number, f"from byte {start:,} of {len(buf):,}")
                return False
            append(_too_large(number, "record", f"{length:,} bytes"))
            return True
        piece = buf[start:end]
        chars = _estimate([piece]) if length <= readers.MAX_ROW_CHARS else 0
        if not budget.room(1, chars):
            budget.stop(number, f"from byte {start:,} of {len(buf):,}")
            return False
        try:
            row = loads(piece)
        except orjson.JSONDecodeError as error:
            append(_parse_error(number, "record", error))
            return True
        if length > readers.MAX_ROW_CHARS:
            chars = _size(row)
            if chars > readers.MAX_ROW_CHARS:
                append(_too_large(number, "record", f"{chars:,} characters"))
                return True
            if not budget.room(1, chars):
                budget.stop(number, f"from byte {start:,} of {len(buf):,}")
                return False
        append((number, row, None))
        budget.chars += chars
        return True

    for item in items:
        if stream:
            budget.flush(item[1] / len(buf) if len(buf) else None)
        if item[0] == "many":
            _, start, end, parsed = item
            chars = end - start - 5 * buf[start:end].count(b"\\u")
            if budget.room(len(parsed), chars):
                rows.extend(zip(range(number + 1, number + len(parsed) + 1), parsed, repeat(None)))
                number += len(parsed)
                budget.chars += chars
                continue
            for _, element_start, element_end in _exact(buf, start, end):  # to stop at the right element
                number += 1
                if not one(number, element_start, element_end):
                    return rows
            continue
        number += 1
        if not one(number, item[1], item[2]):
            return rows
    return rows
