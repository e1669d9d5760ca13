"""Package periods and the event-time attribution of usage inside them.

A package is one period of a tier: [valid_from, valid_until) with a credit
pool. It is a small fixed header (TigerBeetle's account, not its transfers):

* `segments`: usage totals per refresh segment, the segments being cut at
  valid_from and at every refresh instant inside the validity. The balance
  now (`used_micro`, usage at or after `last_reset`) and the balance as of any
  past instant are sums of segments: no usage history is needed for them.
* The exact usage entries (occurred_at, micro-credits) live outside the
  header, in the caller's event memory (`streams.ledger.memory`): each event
  appends one entry, nothing rewrites them. Only a refresh or an upgrade whose
  instant cuts a segment that already holds usage reads them, to split that
  segment exactly, however late it arrives.

Copy-on-write: every change returns a new Package (`step` never changes its inputs).
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from streams.ledger.errors import LedgerInvariantError, invariant

__all__ = ["Entries", "Package", "last_reset_for", "segment_sums", "segment_start"]

#: Usage entries of one package: (occurred_at, micro-credits), in append order.
Entries = list[tuple[datetime, int]]


def last_reset_for(valid_from: datetime, valid_until: datetime,
                   refreshes: tuple[datetime, ...], as_of: datetime | None = None) -> datetime:
    """Latest refresh in [valid_from, valid_until) (and <= as_of when given), else valid_from."""
    if not refreshes:  # the usual account (refreshes before its packages are pruned): the view of every event
        return valid_from
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


def segment_sums(entries: Iterable[tuple[datetime, int]], valid_from: datetime,
                 valid_until: datetime, refreshes: tuple[datetime, ...]
                 ) -> tuple[tuple[datetime, int], ...]:
    """Totals per refresh segment of the entries inside [valid_from, valid_until)."""
    totals: dict[datetime, int] = {}
    for instant, micro in entries:
        if valid_from <= instant < valid_until:
            start = segment_start(valid_from, refreshes, instant)
            totals[start] = totals.get(start, 0) + micro
    return tuple(sorted(totals.items()))


def _sum_from(segments: tuple[tuple[datetime, int], ...], reset: datetime) -> int:
    return sum(micro for start, micro in segments if start >= reset)


@dataclass(slots=True)
class Package:
    """One package period of an account; see module docstring.

    Treated as immutable: the core never assigns to a Package after building
    it (every change builds a new one). Not `frozen=True` only because frozen
    construction costs ~4 us on the usage hot path; tests check that `step`
    leaves its inputs unchanged.

    opened_by: the event_id that opened the period; it names the period's usage
        entries in the event memory (unique per account: event ids are deduplicated).
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
    segments: tuple[tuple[datetime, int], ...] = ()
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

    def used_as_of(self, refreshes: tuple[datetime, ...], as_of: datetime) -> int:
        """Usage counted when refreshes up to `as_of` are in effect (views of the past)."""
        reset = last_reset_for(self.valid_from, self.valid_until, refreshes, as_of)
        if reset == self.last_reset:
            return self.used_micro
        return _sum_from(self.segments, reset)

    def with_usage(self, instant: datetime, micro: int, refreshes: tuple[datetime, ...]) -> "Package":
        """Record one charge at its event time (counted only if at/after the last reset)."""
        if not self.valid_from <= instant < self.valid_until:
            raise LedgerInvariantError("usage attributed to a package not containing it")
        segments = self.segments
        last = segments[-1] if segments else None
        if last is not None and last[0] <= instant and (
                last[0] == self.last_reset or instant < _next_boundary(refreshes, last[0])):
            # The hot path: usage in the newest segment that has usage.
            segments = segments[:-1] + ((last[0], last[1] + micro),)
        else:
            segments = _add(segments, segment_start(self.valid_from, refreshes, instant), micro)
        used = self.used_micro + micro if instant >= self.last_reset else self.used_micro
        return Package(  # positional on purpose: the hot path (dataclasses.replace is ~8 us)
            self.tier, self.period, self.currency, self.valid_from, self.valid_until, self.anchor,
            self.index, self.period_months, self.credits_limit_micro, self.opened_by,
            self.last_reset, used, segments, self.exhausted)

    def needs_entries_to_cut(self, instant: datetime, refreshes: tuple[datetime, ...]) -> bool:
        """True when a cut at `instant` splits a segment holding usage (its entries are needed)."""
        start = segment_start(self.valid_from, refreshes, instant)
        return start != instant and any(s == start and micro for s, micro in self.segments)

    def with_refreshes(self, refreshes: tuple[datetime, ...], entries: Entries | None) -> "Package":
        """Re-cut the segments and re-derive last_reset after the refresh set changed.

        `entries` (this package's usage entries) are needed only when a new refresh
        instant cuts a segment that holds usage (`needs_entries_to_cut`).
        """
        reset = last_reset_for(self.valid_from, self.valid_until, refreshes)
        if entries is None:  # the caller checked `needs_entries_to_cut` for the new instants
            segments = self.segments
        else:
            segments = segment_sums(entries, self.valid_from, self.valid_until, refreshes)
            invariant(sum(m for _, m in segments) == sum(m for _, m in self.segments),
                      "usage entries do not match the package's segments")
        if reset == self.last_reset and segments == self.segments:
            return self
        return replace(self, last_reset=reset, segments=segments, used_micro=_sum_from(segments, reset))

    def split_at(self, instant: datetime, refreshes: tuple[datetime, ...], entries: Entries
                 ) -> tuple["Package", Entries]:
        """Close this package at `instant`; return it and the usage entries at/after `instant`."""
        inside = [e for e in entries if self.valid_from <= e[0] < self.valid_until]
        invariant(sum(m for _, m in inside) == sum(m for _, m in self.segments),
                  "usage entries do not match the package's segments")
        before = [e for e in inside if e[0] < instant]
        moved = [e for e in inside if e[0] >= instant]
        reset = last_reset_for(self.valid_from, instant, refreshes)
        segments = segment_sums(before, self.valid_from, instant, refreshes)
        closed = replace(self, valid_until=instant, last_reset=reset, segments=segments,
                         used_micro=_sum_from(segments, reset))
        return closed, moved

    def with_entries(self, entries: Iterable[tuple[datetime, int]],
                     refreshes: tuple[datetime, ...]) -> "Package":
        """Record several charges (usage moved here by an upgrade)."""
        package = self
        for instant, micro in entries:
            package = package.with_usage(instant, micro, refreshes)
        return package


def _next_boundary(refreshes: tuple[datetime, ...], start: datetime) -> datetime:
    """The first refresh instant after `start` (datetime.max when none): where its segment ends."""
    index = bisect.bisect_right(refreshes, start)
    return refreshes[index] if index < len(refreshes) else datetime.max.replace(tzinfo=start.tzinfo)


def _add(segments: tuple[tuple[datetime, int], ...], start: datetime, micro: int
         ) -> tuple[tuple[datetime, int], ...]:
    totals = dict(segments)
    totals[start] = totals.get(start, 0) + micro
    return tuple(sorted(totals.items()))
