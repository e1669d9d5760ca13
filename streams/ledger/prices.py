"""Prices: list prices, purchase discounts, the upgrade price difference, and quotes.

Money is `Decimal`, rounded half-up to cents once, at the end.
- Discounts apply to monthly purchases only (annual prices are the table's):
  first purchase of the account x0.88; first activation of auto-renewal x0.77
  for an account that never had a package, x0.70 for one that had. Each at
  most once per account; when both apply, the larger discount (smaller factor) wins.
- Upgrade: new list price - (remaining / total) x old list price, in the
  currency given; an exhausted package has 0 remaining; never below 0.00
  (refunds are not supported). Discounts do not apply to upgrades.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from streams.ledger.catalog import Catalog, CatalogVersion
from streams.ledger.rejections import Reason

if TYPE_CHECKING:
    from streams.ledger.packages import Package

__all__ = ["DiscountFlags", "PriceQuote", "purchase_price", "round_money",
           "upgrade_price"]

CENT = Decimal("0.01")


def round_money(amount: Decimal) -> Decimal:
    """Half-up to cents: the only rounding in the core."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class DiscountFlags:
    """Account history that decides discounts."""

    had_package: bool
    first_purchase_discount_used: bool
    auto_renew_activated: bool


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """An amount in cents and the discount that produced it (None: list price)."""

    amount: Decimal
    currency: str
    discount: str | None


def _discount_candidates(version: CatalogVersion, flags: DiscountFlags,
                         auto_renew: bool) -> list[tuple[Decimal, str]]:
    """Every discount this monthly purchase qualifies for, as (factor, name)."""
    candidates: list[tuple[Decimal, str]] = []
    if not flags.had_package and not flags.first_purchase_discount_used:
        candidates.append((version.discounts.first_purchase, "first_purchase"))
    if auto_renew and not flags.auto_renew_activated:
        if flags.had_package:
            candidates.append((version.discounts.auto_renew_existing, "auto_renew_existing"))
        else:
            candidates.append((version.discounts.auto_renew_new, "auto_renew_new"))
    return candidates


def purchase_price(version: CatalogVersion, flags: DiscountFlags, tier: str, period: str,
                   currency: str, auto_renew: bool) -> PriceQuote | Reason:
    """Price of a purchase, with the single best discount applicable (monthly only)."""
    list_price = version.list_price(tier, period, currency)
    if list_price is None:
        return Reason.UNKNOWN_PRICE
    candidates = _discount_candidates(version, flags, auto_renew) if period == "monthly" else []
    if not candidates:
        return PriceQuote(round_money(list_price), currency, None)
    factor, name = min(candidates)  # smallest factor = largest discount
    return PriceQuote(round_money(list_price * factor), currency, name)


def upgrade_price(new_price: Decimal, old_price: Decimal, remaining_micro: int,
                  limit_micro: int) -> Decimal:
    """new - (remaining / total) x old, half-up to cents, floored at 0.00.

    Computed as an exact fraction and rounded once, so a third of a price
    rounds exactly like the rule says, not like a 28-digit Decimal would.
    """
    if limit_micro <= 0:
        raise ValueError("a package's credits_limit must be positive")
    exact = Fraction(new_price) - Fraction(old_price) * max(remaining_micro, 0) / limit_micro
    if exact <= 0:
        return Decimal("0.00")
    cents = math.floor(exact * 100 + Fraction(1, 2))
    return Decimal(cents).scaleb(-2)


def old_list_price(catalog: Catalog, package: "Package", currency: str) -> Decimal | None:
    """The old package's list price in `currency`, from the catalog in effect when it began."""
    version = catalog.version_at(package.valid_from)
    return None if version is None else version.list_price(package.tier, package.period, currency)
