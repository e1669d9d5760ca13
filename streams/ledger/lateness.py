"""Lateness: how far behind in event time usage may arrive and still be charged.

Each ledger-log partition has an event-time high-water mark: the latest `occurred_at`
of usage applied on it. Usage more than `Limits.lateness_max` (35 days) before that mark
is refused as `usage_too_late` (`step` checks it), so it is never charged unchecked,
and an id needs remembering only for that long (`Limits.dedupe_window` >= lateness_max).
Only applied usage moves the mark: plan events come from billing and have ordering
rules of their own, and a refused or duplicate event changes nothing.
"""
from __future__ import annotations

from datetime import datetime

from schemas.events import Usage

__all__ = ["advance", "advance_to"]


def advance(high_water: datetime | None, event: object) -> datetime | None:
    """The partition's high-water mark after `event` was applied (the same object when unchanged)."""
    if type(event) is not Usage:
        return high_water
    return advance_to(high_water, event.occurred_at)  # type: ignore[attr-defined]


def advance_to(high_water: datetime | None, instant: datetime) -> datetime | None:
    """The mark after usage that occurred at `instant` was applied (the same object when unchanged)."""
    if high_water is None or instant > high_water:
        return instant
    return high_water
