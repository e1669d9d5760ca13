"""When will the credits run out at the current pace? (pure: rows in, figures out)

The rule, so the dashboard can show it next to the result:
1. Pace: over the last 24 h and the last 7 d before now (never before the package
   began; at least one hour), sum the credits of the hourly usage rows (the hour the
   window's start cuts counts pro rata), turned into *peak-equivalent* credits:
   off-peak credits are divided by 0.8, because the same work costs 0.8x at night.
   Pace = peak-equivalent credits per hour of the window.
2. Walk forward from now, hour by hour: in a peak hour the work costs pace credits per
   hour, in an off-peak hour (UTC 16:00-24:00) 0.8 x pace. The instant the remaining
   credits reach zero is the run-out instant (inside an hour: linear).
3. Stop at the package's valid_until: if credits are left then, the package outlasts
   the pace (run_out_at is None, outlasts_package True). No usage: no run-out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from projections.facts import hour_start, is_offpeak

__all__ = ["HourUsage", "Pace", "Forecast", "forecast", "OFFPEAK_COEFFICIENT", "WINDOWS_HOURS", "WALK_HOURS_MAX"]

OFFPEAK_COEFFICIENT = Decimal("0.8")
#: The paces shown: the last day and the last week.
WINDOWS_HOURS = (24, 168)
#: Longest walk when the package has no end given: a little over an annual package.
WALK_HOURS_MAX = 400 * 24
#: Shortest span a pace is measured over, so a few seconds of usage are not extrapolated.
COVERED_HOURS_MIN = Decimal(1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourUsage:
    """One hour of an account's usage (the sum over models of `usage_hourly`)."""

    hour_start: datetime
    credits: Decimal
    credits_offpeak: Decimal


@dataclass(frozen=True)
class Pace:
    """One window's figures and what they forecast."""

    window_hours: int
    window_start: datetime
    covered_hours: Decimal
    credits: Decimal
    credits_offpeak: Decimal
    peak_equivalent_credits: Decimal
    peak_equivalent_per_hour: Decimal
    run_out_at: datetime | None
    outlasts_package: bool


@dataclass(frozen=True)
class Forecast:
    now: datetime
    credits_remaining: Decimal
    valid_from: datetime | None
    valid_until: datetime | None
    paces: tuple[Pace, ...]

    def pace(self, window_hours: int) -> Pace:
        return next(p for p in self.paces if p.window_hours == window_hours)


def _hours(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(microseconds=1)) / Decimal(3_600_000_000)


def _after(hours: Decimal) -> timedelta:
    return timedelta(microseconds=int((hours * Decimal(3_600_000_000)).to_integral_value()))


def run_out(now: datetime, remaining: Decimal, per_hour: Decimal, valid_until: datetime | None
            ) -> tuple[datetime | None, bool]:
    """(run-out instant, outlasts the package) walking hour by hour from now at `per_hour`
    peak-equivalent credits, 0.8x of it in off-peak hours."""
    if remaining <= 0:
        return now, False
    if per_hour <= 0:
        return None, valid_until is not None
    at, left = now, remaining
    end_of_walk = valid_until if valid_until is not None else now + WALK_HOURS_MAX * HOUR
    while at < end_of_walk:
        segment_end = min(hour_start(at) + HOUR, end_of_walk)
        rate = per_hour * (OFFPEAK_COEFFICIENT if is_offpeak(at) else Decimal(1))
        cost = rate * _hours(segment_end - at)
        if cost >= left:
            return at + _after(left / rate), False
        left -= cost
        at = segment_end
    return None, valid_until is not None


def _weight(row: HourUsage, window_start: datetime) -> Decimal:
    """The share of an hour's usage inside the window: the hour cut by the window's start
    counts pro rata (usage assumed even within its hour), every later hour fully."""
    if row.hour_start >= window_start:
        return Decimal(1)
    return max(_hours(row.hour_start + HOUR - window_start), Decimal(0))


def _pace(rows: list[HourUsage], now: datetime, window_hours: int, remaining: Decimal,
          valid_from: datetime | None, valid_until: datetime | None) -> Pace:
    window_start = now - window_hours * HOUR
    measured_from = max(window_start, valid_from) if valid_from is not None else window_start
    covered = max(_hours(now - measured_from), COVERED_HOURS_MIN)
    inside = [(row, _weight(row, window_start)) for row in rows if row.hour_start <= now]
    credits = sum((row.credits * weight for row, weight in inside), Decimal(0))
    offpeak = sum((row.credits_offpeak * weight for row, weight in inside), Decimal(0))
    peak_equivalent = credits - offpeak + offpeak / OFFPEAK_COEFFICIENT
    per_hour = peak_equivalent / covered
    at, outlasts = run_out(now, remaining, per_hour, valid_until)
    return Pace(window_hours, window_start, covered, credits, offpeak, peak_equivalent, per_hour, at, outlasts)


def forecast(rows: Iterable[HourUsage], credits_remaining: Decimal, now: datetime,
             valid_until: datetime | None = None, valid_from: datetime | None = None,
             windows_hours: tuple[int, ...] = WINDOWS_HOURS) -> Forecast:
    """The run-out instant at the pace of each window, with the figures it came from."""
    now = now.astimezone(timezone.utc)
    hours = sorted(rows, key=lambda row: row.hour_start)
    paces = tuple(_pace(hours, now, window, credits_remaining, valid_from, valid_until) for window in windows_hours)
    return Forecast(now, credits_remaining, valid_from, valid_until, paces)
