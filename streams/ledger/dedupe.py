"""Bounded dedupe memory: the most recent applied event_ids with a content fingerprint.

Ids are idempotency keys: a redelivery with the same id and the same content
is a no-op; the same id with different content is `duplicate_conflict`. The
memory keeps the last `applied_ids_max` ids (FIFO eviction).

Persistence trick (why this is not a plain dict copy per event): versions
share one append-only list and index; each version sees only its first `n`
entries. Appending to the newest version is O(1) and leaves older versions
unchanged; appending to an older version (a branch) copies its window first.
So `step` stays pure (inputs are never changed) at O(1) amortized cost.
"""
from __future__ import annotations

import hashlib
from itertools import chain
from typing import Iterator

from streams.ledger.json_cache import JsonArray

__all__ = ["AppliedIds", "fingerprint_bytes"]


def fingerprint_bytes(canonical: bytes) -> str:
    """A short stable fingerprint of an event's canonical content (64 bits, hex)."""
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def _all_text(pairs: list) -> bool:
    """True when every item of every pair is a string (checked by one C-level join)."""
    try:
        "".join(chain.from_iterable(pairs))
    except TypeError:
        return False
    return True


class AppliedIds:
    """Immutable view of the last `capacity` applied (event_id, fingerprint) pairs."""

    #: `_json` caches the serialized entries of the shared list (see `json_pairs`).
    __slots__ = ("_entries", "_index", "_n", "_capacity", "_json")

    def __init__(self, capacity: int, entries: list[tuple[str, str]] | None = None,
                 index: dict[str, int] | None = None, n: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._entries = [] if entries is None else entries
        self._index = {e[0]: i for i, e in enumerate(self._entries)} if index is None else index
        self._n = len(self._entries) if n is None else n
        self._json = JsonArray()

    @classmethod
    def from_pairs(cls, capacity: int, pairs: list[tuple[str, str]]) -> "AppliedIds":
        """Rebuild from serialized pairs (oldest first), keeping the newest `capacity`."""
        if (type(pairs) is list and set(map(type, pairs)) <= {list, tuple}
                and set(map(len, pairs)) <= {2} and _all_text(pairs)):
            # Our own output (pairs of two strings): the same as below, checked in bulk.
            return cls(capacity, list(map(tuple, pairs[-capacity:])))
        kept = [(str(i), str(f)) for i, f in pairs][-capacity:]
        return cls(capacity, kept)

    def get(self, event_id: str) -> str | None:
        """The fingerprint recorded for `event_id`, None when not remembered."""
        position = self._index.get(event_id)
        if position is None or position >= self._n or position < self._n - self._capacity:
            return None
        return self._entries[position][1]

    def add(self, event_id: str, fingerprint: str) -> "AppliedIds":
        """A new version that also remembers `event_id` (evicting the oldest beyond capacity)."""
        entries, index, n, capacity, json = (self._entries, self._index, self._n, self._capacity,
                                             self._json)
        if len(entries) != n or event_id in index:
            # Another version appended past us, or the id is re-added after
            # eviction (overwriting its index slot would change older versions).
            start = max(0, n - capacity)
            entries, index = self._window_copy()
            json = json.sliced(start, n)
            n = len(entries)
        entries.append((event_id, fingerprint))
        index[event_id] = n
        n += 1
        if n >= 2 * capacity:  # bound memory at 2 x capacity: keep only the window
            json = json.sliced(n - capacity, n)
            entries = entries[n - capacity:]
            index = {entry_id: i for i, (entry_id, _) in enumerate(entries)}
            n = capacity
        added = _new_applied(AppliedIds)  # positional fields, no checks: the hot path
        added._capacity = capacity
        added._entries = entries
        added._index = index
        added._n = n
        added._json = json
        return added

    def _window_copy(self) -> tuple[list[tuple[str, str]], dict[str, int]]:
        """Fresh list and index holding only this version's visible window."""
        window = self._entries[max(0, self._n - self._capacity):self._n]
        return window, {event_id: i for i, (event_id, _) in enumerate(window)}

    def pairs(self) -> list[tuple[str, str]]:
        """Visible (event_id, fingerprint) pairs, oldest first."""
        return self._entries[max(0, self._n - self._capacity):self._n]

    def json_pairs(self) -> bytes:
        """`orjson.dumps(self.pairs())`, serializing only pairs never serialized."""
        return self._json.array(self._entries, max(0, self._n - self._capacity), self._n)

    def __len__(self) -> int:
        return min(self._n, self._capacity)

    def __iter__(self) -> Iterator[str]:
        return (event_id for event_id, _ in self.pairs())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AppliedIds) and self.pairs() == other.pairs()

    def __repr__(self) -> str:
        return f"AppliedIds(len={len(self)}, capacity={self._capacity})"


_new_applied = AppliedIds.__new__
