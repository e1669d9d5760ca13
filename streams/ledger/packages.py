"""Package periods and the event-time attribution of usage inside them.

A package is one period of a tier: [valid_from, valid_until) with a credit
pool. Its usage is kept so that any arrival order gives the same balance:

* `log`: usage entries (occurred_at, micro-credits) at their exact instant,
  so a refresh or upgrade arriving late at T can split them exactly (entries
  at or after T count, entries before T do not / move to the new package).
* When the log exceeds `usage_entries_max`, its oldest half is folded into
  `compacted` totals per refresh segment and `horizon` becomes the newest
  folded instant; later a split at T <= horizon is refused, never guessed.
* `last_reset` is the latest refresh instant inside the validity (or
  valid_from) and `used_micro` the usage at or after it: the balance now.

Copy-on-write: every change returns a new Package; the log is shared
append-only between versions (see `UsageLog`).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator

from streams.ledger.errors import LedgerInvariantError, invariant
from streams.ledger.json_cache import JsonArray

__all__ = ["Package", "UsageLog", "last_reset_for", "segment_start"]


class UsageLog:
    """Append-only (occurred_at, micro-credits) entries; versions share one list.

    `_texts` caches the JSON form ([RFC 3339 text, credits text]) of a prefix
    of the shared list: entries never change once appended, so the cache is
    valid for every version sharing the list, and `to_dict` encodes only the
    entries added since the last encoding (or since `from_dict`). `_json`
    caches the serialized bytes of those texts the same way (`encoded_json`).
    """

    __slots__ = ("_items", "_n", "_texts", "_json")

    def __init__(self, items: list[tuple[datetime, int]] | None = None, n: int | None = None,
                 texts: list[tuple[str, str]] | None = None):
        self._items = [] if items is None else items
        self._n = len(self._items) if n is None else n
        self._texts = [] if texts is None else texts
        self._json = JsonArray()

    def append(self, instant: datetime, micro: int) -> "UsageLog":
        """A new version with one more entry; O(1) unless this version was branched from."""
        items, n, texts, json = self._items, self._n, self._texts, self._json
        if len(items) != n:
            items = items[:n]
            texts = texts[:n]
            json = json.sliced(0, n)
        items.append((instant, micro))
        log = _new_log(UsageLog)
        log._items = items
        log._n = n + 1
        log._texts = texts
        log._json = json
        return log

    def encoded(self, encode: Callable[[list[tuple[datetime, int]]], list[tuple[str, str]]]
                ) -> list[list[str]]:
        """This version's entries as fresh JSON lists, encoding only the uncached ones."""
        texts, n = self._texts, self._n
        done = len(texts)
        if done < n:
            texts.extend(encode(self._items[done:n]))
        return list(map(list, texts if len(texts) == n else texts[:n]))

    def encoded_json(self, encode: Callable[[list[tuple[datetime, int]]], list[tuple[str, str]]]
                     ) -> bytes:
        """`orjson.dumps(self.encoded(encode))`, serializing only entries never serialized."""
        texts, n = self._texts, self._n
        done = len(texts)
        if done < n:
            texts.extend(encode(self._items[done:n]))
        return self._json.array(texts, 0, n)

    def entries(self) -> list[tuple[datetime, int]]:
        """This version's entries (a copy-free slice when possible)."""
        return self._items if len(self._items) == self._n else self._items[: self._n]

    def sum_from(self, start: datetime) -> int:
        """Micro-credits of entries with occurred_at >= start."""
        return sum(micro for instant, micro in self.entries() if instant >= start)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple[datetime, int]]:
        return iter(self.entries())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsageLog) and self.entries() == other.entries()

    def __repr__(self) -> str:
        return f"UsageLog(len={self._n})"


_new_log = UsageLog.__new__


def last_reset_for(valid_from: datetime, valid_until: datetime,
                   refreshes: tuple[datetime, ...], as_of: datetime | None = None) -> datetime:
    """Latest refresh in [valid_from, valid_until) (and <= as_of when given), else valid_from."""
    bound = valid_until if as_of is None else min(valid_until, _after(as_of))
    index = bisect.bisect_left(refreshes, bound) - 1
    if index >= 0 and refreshes[index] >= valid_from:
        return refreshes[index]
    return valid_from


def _after(instant: datetime) -> datetime:
    """Smallest bound that still includes `instant` in a half-open [.., bound) search."""
    return instant + timedelta(microseconds=1)


def segment_start(valid_from: datetime, refreshes: tuple[datetime, ...],
                  instant: datetime) -> datetime:
    """Start of the refresh segment holding `instant`: latest refresh <= instant, or valid_from."""
    index = bisect.bisect_right(refreshes, instant) - 1
    if index >= 0 and refreshes[index] >= valid_from:
        return refreshes[index]
    return valid_from


@dataclass(slots=True)
class Package:
    """One package period of an account; see module docstring.

    Treated as immutable: the core never assigns to a Package after building
    it (every change builds a new one). Not `frozen=True` only because frozen
    construction costs ~4 us on the usage hot path; tests check that `step`
    leaves its inputs unchanged.
    """

    tier: str
    period: str
    currency: str
    valid_from: datetime
    valid_until: datetime
    anchor: datetime
    index: int
    period_months: int
    credits_limit_micro: int
    opened_by: str
    last_reset: datetime
    used_micro: int = 0
    log: UsageLog = field(default_factory=UsageLog)
    compacted: tuple[tuple[datetime, int], ...] = ()
    horizon: datetime | None = None
    exhausted: bool = False

    def contains(self, instant: datetime) -> bool:
        """Half-open validity [valid_from, valid_until)."""
        return self.valid_from <= instant < self.valid_until

    @property
    def remaining_micro(self) -> int:
        """Credits left now; never negative (in-flight usage may overshoot the pool)."""
        return max(self.credits_limit_micro - self.used_micro, 0)

    @property
    def is_exhausted(self) -> bool:
        """used >= pool: gateways must refuse service."""
        return self.used_micro >= self.credits_limit_micro

    def can_split_at(self, instant: datetime) -> bool:
        """True when every compacted entry is before `instant`, so a split there is exact."""
        return self.horizon is None or instant > self.horizon

    def used_as_of(self, refreshes: tuple[datetime, ...], as_of: datetime) -> int:
        """Usage counted when refreshes up to `as_of` are in effect (views of the past)."""
        reset = last_reset_for(self.valid_from, self.valid_until, refreshes, as_of)
        if reset == self.last_reset:
            return self.used_micro
        return self._count_from(reset)

    def _count_from(self, reset: datetime) -> int:
        folded = sum(micro for start, micro in self.compacted if start >= reset)
        return folded + self.log.sum_from(reset)

    def with_usage(self, instant: datetime, micro: int, refreshes: tuple[datetime, ...],
                   entries_max: int) -> "Package":
        """Record one charge at its event time (counted only if at/after the last reset)."""
        if not self.valid_from <= instant < self.valid_until:
            raise LedgerInvariantError("usage attributed to a package not containing it")
        used = self.used_micro + micro if instant >= self.last_reset else self.used_micro
        log = self.log.append(instant, micro)
        package = Package(  # positional on purpose: the hot path (dataclasses.replace is ~8 us)
            self.tier, self.period, self.currency, self.valid_from, self.valid_until, self.anchor,
            self.index, self.period_months, self.credits_limit_micro, self.opened_by,
            self.last_reset, used, log, self.compacted, self.horizon, self.exhausted)
        if log._n > entries_max:
            package = package._compact(refreshes)
        return package

    def _compact(self, refreshes: tuple[datetime, ...]) -> "Package":
        """Fold the oldest half of the log into per-segment totals; advance the horizon."""
        ordered = sorted(self.log.entries(), key=lambda entry: entry[0])
        cut = len(ordered) // 2
        folded, kept = ordered[:cut], ordered[cut:]
        totals = dict(self.compacted)
        for instant, micro in folded:
            start = segment_start(self.valid_from, refreshes, instant)
            totals[start] = totals.get(start, 0) + micro
        horizon = folded[-1][0] if self.horizon is None else max(self.horizon, folded[-1][0])
        package = replace(self, log=UsageLog(list(kept)), compacted=tuple(sorted(totals.items())),
                          horizon=horizon)
        invariant(package._count_from(package.last_reset) == package.used_micro,
                  "compaction changed the counted usage")
        return package

    def with_refreshes(self, refreshes: tuple[datetime, ...]) -> "Package":
        """Re-derive last_reset and the counted usage after the refresh set changed."""
        reset = last_reset_for(self.valid_from, self.valid_until, refreshes)
        if reset == self.last_reset:
            return self
        invariant(self.can_split_at(reset) or reset <= self.last_reset,
                  "refresh applied across the compaction horizon")
        return replace(self, last_reset=reset, used_micro=self._count_from(reset))

    def split_at(self, instant: datetime, refreshes: tuple[datetime, ...]
                 ) -> tuple["Package", list[tuple[datetime, int]]]:
        """Close this package at `instant`; return it and the usage entries at/after `instant`."""
        invariant(self.can_split_at(instant), "split across the compaction horizon")
        before = [e for e in self.log.entries() if e[0] < instant]
        moved = [e for e in self.log.entries() if e[0] >= instant]
        reset = last_reset_for(self.valid_from, instant, refreshes)
        closed = replace(self, valid_until=instant, log=UsageLog(before), last_reset=reset)
        closed = replace(closed, used_micro=closed._count_from(reset))
        return closed, moved

    def with_entries(self, entries: Iterable[tuple[datetime, int]],
                     refreshes: tuple[datetime, ...], entries_max: int) -> "Package":
        """Record several charges (usage moved here by an upgrade)."""
        package = self
        for instant, micro in entries:
            package = package.with_usage(instant, micro, refreshes, entries_max)
        return package
