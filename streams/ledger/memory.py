"""Event memory: what was applied, kept beside the account state, never inside it.

TigerBeetle keeps an account as a small fixed record and its transfers in a store of
their own, keyed by id (which is also how a retried transfer is recognised). The core
does the same: `AccountState` holds balances and package headers; the memory holds
* the **applied event ids** with a content fingerprint, so a retry is charged once
  however many events came in between (`fingerprint_of`), and
* every package's **usage entries** at their exact event time, so a late refresh or
  upgrade splits usage exactly (`usage_entries`).

`step` only *reads* the memory (through `EventMemory`, a protocol: the live worker's
store reads RocksDB, a replay reads dicts); what an applied event adds comes back in
its `StepResult` (`fingerprint`, `appended`) and the caller writes it, in the same unit
of work that writes the account state. Ids expire by event time: an id is kept while
its day is inside `dedupe_window` of the partition's event-time high-water mark, which
is never shorter than `lateness_max`, so no accepted usage can duplicate an accepted
event whose id was dropped.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Protocol

from streams.ledger.packages import Entries

__all__ = ["DAY_S", "EventMemory", "InMemoryEventMemory", "MemoryWriter", "record_applied", "day_of", "expired_before",
           "quiet_marks"]

#: Ids are expired in whole days of event time (a bucket is dropped as a whole).
DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


class EventMemory(Protocol):
    """Read side of the event memory, as `step` sees it."""

    def fingerprint_of(self, account_id: str, event_id: str) -> str | None:
        """The fingerprint recorded for an applied event id, None when not remembered."""
        ...

    def usage_entries(self, account_id: str, package_id: str) -> Entries:
        """Every usage entry appended for the package `package_id` (its `opened_by`)."""
        ...


#: Below this many days after the epoch (about the year 2240), `total_seconds()` of the
#: offset is exact to the second (it is < 2**33 s), so `day_of` equals `timedelta.days`.
_EXACT_DAYS = 99_000


class MemoryWriter(Protocol):
    """Write side of an event memory: what the caller of `step` stores after it."""

    def remember(self, account_id: str, event_id: str, fingerprint: str, occurred_at: datetime) -> None: ...
    def append(self, account_id: str, appended: Iterable[tuple[str, datetime, int]]) -> None: ...
    def forget_package(self, account_id: str, package_id: str) -> None: ...


def record_applied(memory: MemoryWriter, account_id: str, event, result) -> None:
    """Store what `step`'s result says an applied event adds: its id, its usage entries;
    pruned packages' entries go. One definition for every memory (replays and the worker)."""
    if result.fingerprint is None:
        return
    memory.remember(account_id, event.event_id, result.fingerprint, event.occurred_at)
    if result.appended:
        memory.append(account_id, result.appended)
    for package_id in result.forgotten:
        memory.forget_package(account_id, package_id)


def day_of(instant: datetime) -> int:
    """The event-time day (days since 1970-01-01 UTC) an id is bucketed under."""
    delta = instant - _EPOCH
    days = delta.days
    if 0 <= days < _EXACT_DAYS:  # every real event: skip the float (the same day)
        return days
    return int(delta.total_seconds()) // DAY_S


def expired_before(high_water: datetime | None, window: timedelta) -> int | None:
    """Days strictly below this one are outside the dedupe window (None: nothing expires yet).

    A day d covers [d, d + 1 day); it is dropped once all of it lies before
    high_water - window.
    """
    if high_water is None:
        return None
    return day_of(high_water - window) if high_water - window >= _EPOCH else None


def quiet_marks(day: int, window: timedelta) -> tuple[datetime, datetime] | None:
    """[low, high): the high-water marks at which no id of `day` or later expires; None when not exactly known.

    low: from it on `expired_before` can compute (high_water - window is a datetime);
    high: where `expired_before` first exceeds `day`. None near the limit of `day_of`'s
    shortcut or for windows beyond the calendar: the caller then computes each time.
    """
    if day + 1 >= _EXACT_DAYS:
        return None
    try:
        return _EARLIEST + window, _EPOCH + timedelta(days=max(day + 1, 0)) + window
    except OverflowError:
        return None


class InMemoryEventMemory:
    """Dict-backed event memory (replays, quotes, tests): the same semantics as the worker's store."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._days: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self._entries: dict[tuple[str, str], Entries] = {}
        #: The smallest day holding ids (None: none), so that `expire`, called at every
        #: move of the high-water mark, costs nothing while no day is due.
        self._oldest_day: int | None = None
        #: `quiet_marks(_quiet_day, _quiet_window)`, for `expire_behind`.
        self._quiet_day: int | None = None
        self._quiet_window: timedelta | None = None
        self._quiet: tuple[datetime, datetime] | None = None

    def fingerprint_of(self, account_id: str, event_id: str) -> str | None:
        return self._ids.get((account_id, event_id))

    def usage_entries(self, account_id: str, package_id: str) -> Entries:
        return list(self._entries.get((account_id, package_id), ()))

    def remember(self, account_id: str, event_id: str, fingerprint: str, occurred_at: datetime) -> None:
        """Record an applied event id under its event-time day."""
        key = (account_id, event_id)
        ids = self._ids
        known = len(ids)
        ids[key] = fingerprint
        if len(ids) > known:  # a new id (one lookup, not two: this runs for every event)
            day = day_of(occurred_at)
            self._days[day].append(key)
            if self._oldest_day is None or day < self._oldest_day:
                self._oldest_day = day

    def append(self, account_id: str, appended: Iterable[tuple[str, datetime, int]]) -> None:
        """Append (package_id, occurred_at, micro) usage entries."""
        for package_id, instant, micro in appended:
            self.append_entry(account_id, package_id, instant, micro)

    def append_entry(self, account_id: str, package_id: str, instant: datetime, micro: int) -> None:
        """Append one usage entry of the package `package_id`."""
        entries = self._entries.get((account_id, package_id))
        if entries is None:
            entries = self._entries[(account_id, package_id)] = []
        entries.append((instant, micro))

    def expire(self, before_day: int | None) -> int:
        """Drop the ids of every day < before_day (whole buckets); returns how many."""
        if before_day is None or self._oldest_day is None or self._oldest_day >= before_day:
            return 0
        dropped = 0
        for day in [d for d in self._days if d < before_day]:
            for key in self._days.pop(day):
                if self._ids.pop(key, None) is not None:
                    dropped += 1
        self._oldest_day = min(self._days, default=None)
        return dropped

    def expire_behind(self, high_water: datetime, window: timedelta) -> int:
        """`expire(expired_before(high_water, window))`, without the day arithmetic while no day is due.

        Why: a replay moves a high-water mark at nearly every usage event, and nearly
        always nothing expires: two comparisons with the marks of `quiet_marks` are cheaper.
        """
        oldest = self._oldest_day
        if oldest != self._quiet_day or window is not self._quiet_window:
            self._quiet_day, self._quiet_window = oldest, window
            self._quiet = None if oldest is None else quiet_marks(oldest, window)
        quiet = self._quiet
        if quiet is not None and quiet[0] <= high_water < quiet[1]:
            return 0
        return self.expire(expired_before(high_water, window))

    def forget_package(self, account_id: str, package_id: str) -> None:
        """A pruned package's entries can never be read again."""
        self._entries.pop((account_id, package_id), None)

    def __len__(self) -> int:
        return len(self._ids)
