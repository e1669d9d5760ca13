"""Validity periods: calendar-month arithmetic in UTC.

A monthly package bought at t is valid [t, t + 1 calendar month); annual
[t, t + 12 months). Adding months keeps the time of day and clamps the day
to the target month's length (Jan 31 + 1 month = Feb 28, or Feb 29 in a
leap year). Renewals are anchored on the first period's start, so a chain
bought on Jan 31 runs Feb 28, Mar 31, Apr 30... instead of drifting to the
28th: the n-th period ends at anchor + (n + 1) x months.
"""
from __future__ import annotations

import calendar
from datetime import datetime

__all__ = ["add_months", "period_end", "contains"]


def add_months(instant: datetime, months: int) -> datetime:
    """`instant` moved by whole calendar months, day clamped to the month's length."""
    month_index = instant.month - 1 + months
    year = instant.year + month_index // 12
    month = month_index % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def period_end(anchor: datetime, period_months: int, index: int) -> datetime:
    """End (exclusive) of the `index`-th period (0 = first) of a chain started at `anchor`."""
    return add_months(anchor, period_months * (index + 1))


def contains(valid_from: datetime, valid_until: datetime, instant: datetime) -> bool:
    """Half-open validity: [valid_from, valid_until)."""
    return valid_from <= instant < valid_until
