"""Rating: how many credits one usage event costs, including the off-peak coefficient.

credits = hit x ratio_hit + miss x ratio_miss + output x ratio_output, times
the off-peak coefficient (0.8) when occurred_at falls in the off-peak window
[16:00, 24:00) UTC, i.e. Beijing 00:00-08:00: start inclusive, end exclusive.
Computed in integer micro-credits (see `units`): exact, never rounded.

`rate` is the rule; it also says which coefficient it applied and what that saved
(the charge at coefficient 1 minus the charge), so a fact can carry what a dashboard
needs without anyone rating again. `charge_micro` is its charge alone.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from streams.ledger.catalog import CatalogVersion

__all__ = ["ONE", "Rating", "charge_micro", "is_offpeak", "rate", "seconds_of_day"]

#: The coefficient applied at peak.
ONE = Decimal(1)

#: (micro-credits charged, coefficient applied, off-peak, micro-credits saved by it).
Rating = tuple[int, Decimal, bool, int]


def seconds_of_day(instant: datetime) -> int:
    """Whole seconds since 00:00 UTC of the instant's day (instant must be UTC)."""
    return instant.hour * 3600 + instant.minute * 60 + instant.second


def is_offpeak(version: CatalogVersion, instant: datetime) -> bool:
    """True when the UTC instant is in the off-peak window [start_s, end_s).

    Fractions of a second do not matter at the boundaries: 15:59:59.999 is
    still peak, 16:00:00.000 is off-peak, 00:00:00 UTC is peak again.
    """
    second = seconds_of_day(instant)
    return version.offpeak.start_s <= second < version.offpeak.end_s


def rate(version: CatalogVersion, model: str, hit: int, miss: int, output: int,
         instant: datetime) -> Rating | None:
    """The `Rating` of one usage event, or None when the model is unknown.

    Off peak, the saving is the peak charge minus the off-peak one: both exact (the
    catalog refuses off-peak ratios that would need rounding), so it is exact too.
    """
    pair = version._micro.get(model.lower())  # micro_ratios(model), inlined: the hot path
    if pair is None:
        return None
    start_s, end_s = version._offpeak_window
    second = instant.hour * 3600 + instant.minute * 60 + instant.second  # seconds_of_day
    ratio_hit, ratio_miss, ratio_output = pair[0]
    peak = hit * ratio_hit + miss * ratio_miss + output * ratio_output
    if not start_s <= second < end_s:
        return peak, ONE, False, 0
    ratio_hit, ratio_miss, ratio_output = pair[1]
    micro = hit * ratio_hit + miss * ratio_miss + output * ratio_output
    return micro, version.offpeak.coefficient, True, peak - micro


def charge_micro(version: CatalogVersion, model: str, hit: int, miss: int, output: int,
                 instant: datetime) -> int | None:
    """Micro-credits for one usage event, or None when the model is unknown (`rate`'s charge)."""
    rating = rate(version, model, hit, miss, output, instant)
    return None if rating is None else rating[0]
