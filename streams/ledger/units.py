"""Credit units: the core counts credits as exact integers of micro-credits.

Credits are never rounded. Every catalog ratio (and ratio x off-peak
coefficient) is checked at load to be a whole number of micro-credits, so a
charge is an integer sum of integer products: exact, and fast. Decimals
appear only at the edges (views, facts, JSON), as `Decimal` strings.
"""
from __future__ import annotations

import re
from decimal import Context, Decimal
from itertools import repeat
from operator import mul

__all__ = ["MICRO", "TEXT_FAST_BELOW", "credits_text", "from_micro", "parse_micro_text", "parse_micro_texts",
           "to_micro"]

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


#: Below this, integer arithmetic gives exactly `format(from_micro(m), "f")` (Decimal's
#: 28-digit context never rounds), ~5x faster; larger values take the Decimal path.
TEXT_FAST_BELOW = 10 ** 27


def credits_text(micro: int) -> str:
    """Micro-credits as a plain decimal string ('3000000000', '7.5'), never exponent form."""
    if type(micro) is int and 0 <= micro < TEXT_FAST_BELOW:
        whole, fraction = divmod(micro, MICRO)
        if not fraction:
            return str(whole)
        return f"{whole}.{fraction:06d}".rstrip("0")
    return format(from_micro(micro), "f")


def parse_micro_text(text: str) -> int | None:
    """The micro-credits of `text` when it is exactly what `credits_text` writes, else None.

    A fast exact parser for our own output (no sign, no exponent, no leading
    or trailing zeros, at most 6 fraction digits); anything else returns None
    and the caller takes the general Decimal path.
    """
    whole, dot, fraction = text.partition(".")
    if not (whole.isdigit() and whole.isascii()) or (whole[0] == "0" and len(whole) > 1):
        return None
    if not dot:
        return int(whole) * MICRO
    if (fraction.isdigit() and fraction.isascii() and len(fraction) <= 6
            and fraction[-1] != "0"):
        return int(whole) * MICRO + int(fraction) * 10 ** (6 - len(fraction))
    return None



#: Many `credits_text` outputs joined by newlines (at most 20 integer digits each).
_CANONICAL_TEXTS = re.compile(r"(?:(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{0,5}[1-9])?\n)*")
_EXACT = Context(prec=60)  # 26 significant digits at most: products are exact
_MICRO_DECIMAL = Decimal(MICRO)


def parse_micro_texts(texts: list[str]) -> list[int] | None:
    """`[parse_micro_text(t) for t in texts]` in bulk (C loops), None unless all are canonical.

    `texts` must be strings. Checked by one regex over the joined texts, then
    converted exactly (ints, or Decimals times 10^6 in a 60-digit context).
    """
    if not texts:
        return []
    joined = "\n".join(texts) + "\n"
    if _CANONICAL_TEXTS.fullmatch(joined) is None:
        return None
    if "." not in joined:
        return list(map(mul, map(int, texts), repeat(MICRO)))
    return list(map(int, map(_EXACT.multiply, map(Decimal, texts), repeat(_MICRO_DECIMAL))))
