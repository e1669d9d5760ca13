"""Credit units: the core counts credits as exact integers of micro-credits.

Credits are never rounded. Every catalog ratio (and ratio x off-peak
coefficient) is checked at load to be a whole number of micro-credits, so a
charge is an integer sum of integer products: exact, and fast. Decimals
appear only at the edges (views, facts, JSON), as `Decimal` strings.
"""
from __future__ import annotations

from decimal import Decimal

__all__ = ["MICRO", "credits_text", "from_micro", "to_micro"]

#: Micro-credits per credit.
MICRO = 1_000_000
_MICRO_EXPONENT = -6


def to_micro(credits: Decimal) -> int:
    """Exact conversion to micro-credits; ValueError when it would need rounding."""
    scaled = credits.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{credits} credits is not a whole number of micro-credits")
    return int(scaled)


def from_micro(micro: int) -> Decimal:
    """Micro-credits back to a Decimal of credits, without trailing zeros (1.6, not 1.600000)."""
    value = Decimal(micro).scaleb(_MICRO_EXPONENT)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def credits_text(micro: int) -> str:
    """Micro-credits as a plain decimal string ('3000000000', '7.5'), never exponent form."""
    return format(from_micro(micro), "f")
