"""How numbers and instants are written: one place, so the page, the charts and the API agree."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from projections.types import canonical
from schemas.events import format_instant

__all__ = ["decimal_text", "instant_text", "grouped", "compact", "percent"]


def decimal_text(value: Decimal | int | None) -> str | None:
    """The API's spelling of a decimal: a string without exponent or trailing zeros ('3000', '1.6')."""
    if value is None:
        return None
    return format(canonical(Decimal(value)), "f")


def instant_text(value: datetime | None) -> str | None:
    """UTC RFC 3339 with 'Z' (microseconds only when present)."""
    if value is None:
        return None
    return format_instant(value)


def grouped(value: Decimal | int | None) -> str:
    """Thousands separators for people: 3,814,510,052 or 1,234.5 ('–' for nothing)."""
    if value is None:
        return "–"
    return format(canonical(Decimal(value)), ",f")


def compact(value: Decimal | int | float) -> str:
    """Short axis labels: 4.1B, 250M, 12k, 0.5."""
    number = float(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.3g}{suffix}"
    return f"{number:.3g}"


def percent(part: Decimal, whole: Decimal) -> Decimal:
    """part / whole in percent, 0 when whole is 0 (a pool of 0 is fully used, shown as 0 left)."""
    if whole <= 0:
        return Decimal(0)
    return part * 100 / whole


def short_instant(value: datetime | None) -> str:
    """'2026-05-01 14:00 UTC' for tables (the API keeps full RFC 3339)."""
    if value is None:
        return "–"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
