"""Serialization caches for the streaming worker's per-event table write.

The worker writes an account's whole state on every event, and most of it did
not change since the previous write: the usage log and the dedupe memory only
grew by one entry, the older packages and most instants are the same. These
caches keep what was already serialized, so a write serializes only what is
new. They are memoization only: every result is exactly the bytes (or text) the
plain code gives, and tests check it (tests/ledger/test_fast_paths.py).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import orjson

from schemas.events import format_instant

__all__ = ["JsonArray", "instant_text"]

_dumps = orjson.dumps


class JsonArray:
    """The JSON elements of an append-only list, serialized once, in one growing buffer.

    Shared by the versions that share one append-only list (`UsageLog`,
    `AppliedIds`): element i never changes once appended, so its bytes are valid
    for every version, and `array(items, start, stop)` is exactly
    `orjson.dumps(items[start:stop])`, encoding only elements never encoded.
    A version that branches (copies a prefix of the list) takes `sliced`.

    Layout: `buffer` is b"[" then each element followed by b","; `ends[i]` is
    the offset just past the comma of element i - 1 (`ends[0] == 1`).
    """

    __slots__ = ("buffer", "ends")

    def __init__(self) -> None:
        self.buffer = bytearray(b"[")
        self.ends = [1]

    def array(self, items: Sequence[Any], start: int, stop: int) -> bytes:
        """`orjson.dumps(list(items[start:stop]))`, from the cache."""
        if stop <= start:
            return b"[]"
        ends = self.ends
        done = len(ends) - 1
        if done < stop:
            buffer = self.buffer
            for item in items[done:stop]:
                buffer += _dumps(item)
                buffer += b","
                ends.append(len(buffer))
        with memoryview(self.buffer) as view:  # released at once: the buffer may grow later
            if start == 0:
                return b"".join((view[:ends[stop] - 1], b"]"))
            return b"".join((b"[", view[ends[start]:ends[stop] - 1], b"]"))

    def sliced(self, start: int, stop: int) -> "JsonArray":
        """The cache for a new list holding `items[start:stop]` of this one's list."""
        copy = JsonArray()
        ends = self.ends
        stop = min(stop, len(ends) - 1)
        if stop > start:
            offset = ends[start] - 1
            copy.buffer += self.buffer[ends[start]:ends[stop]]
            copy.ends = [end - offset for end in ends[start:stop + 1]]
        return copy


#: format_instant results: a state repeats the same few instants on every write
#: (validity bounds, anchors, refresh instants). Equal datetimes format equally
#: (`format_instant` converts to UTC), so a plain dict is exact. Bounded: cleared
#: when full.
_INSTANT_TEXTS: dict[datetime, str] = {}
_INSTANT_TEXTS_MAX = 65_536


def instant_text(instant: datetime) -> str:
    """`format_instant(instant)`, memoized."""
    text = _INSTANT_TEXTS.get(instant)
    if text is None:
        text = format_instant(instant)
        if len(_INSTANT_TEXTS) >= _INSTANT_TEXTS_MAX:
            _INSTANT_TEXTS.clear()
        _INSTANT_TEXTS[instant] = text
    return text
