"""Decisions about packages: may this purchase or upgrade happen at `at`, what does it cost,
which package does it open. `step` applies them; `quote` answers with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streams.ledger.catalog import Catalog, CatalogVersion
from streams.ledger.memory import EventMemory, InMemoryEventMemory
from streams.ledger.packages import Entries, Package, last_reset_for
from streams.ledger.periods import period_end
from streams.ledger.prices import DiscountFlags, PriceQuote, old_list_price, purchase_price, upgrade_price
from streams.ledger.rejections import Reason
from streams.ledger.state import AccountState
from streams.ledger.units import to_micro

__all__ = ["NO_MEMORY", "PurchaseDecision", "UpgradeDecision", "decide_purchase", "decide_upgrade",
           "new_package", "quote"]

#: The memory of a caller that remembers nothing (a quote on a bare state, tests).
NO_MEMORY: EventMemory = InMemoryEventMemory()


@dataclass(frozen=True, slots=True)
class PurchaseDecision:
    """An accepted purchase: what it costs and the package it opens."""

    price: PriceQuote
    package: Package


@dataclass(frozen=True, slots=True)
class UpgradeDecision:
    """An accepted upgrade: its price difference, the package closed and the one opened."""

    price: PriceQuote
    old_index: int
    package: Package
    #: The valid package closed at the upgrade instant, and its usage at/after it (moving over).
    closed: Package
    moved: Entries


def new_package(version: CatalogVersion, tier: str, period: str, currency: str,
                 start: datetime, anchor: datetime, index: int, opened_by: str,
                 refreshes: tuple[datetime, ...]) -> Package | Reason:
    limit = version.credits_limit(tier, period)
    months = version.period_months.get(period)
    if limit is None or months is None:
        return Reason.UNKNOWN_TIER
    until = period_end(anchor, months, index)
    return Package(tier=tier, period=period, currency=currency, valid_from=start,
                   valid_until=until, anchor=anchor, index=index, period_months=months,
                   credits_limit_micro=to_micro(limit), opened_by=opened_by,
                   last_reset=last_reset_for(start, until, refreshes))


def decide_purchase(state: AccountState | None, tier: str, period: str, currency: str,
                    auto_renew: bool, at: datetime, catalog: Catalog,
                    event_id: str = "") -> PurchaseDecision | Reason:
    """Decide a purchase at `at`: refused while a package is valid or out of order."""
    version = catalog.version_at(at)
    if version is None:
        return Reason.NO_CATALOG_VERSION
    if state is not None and state.packages:
        latest = state.packages[-1]
        if latest.contains(at):
            return Reason.PACKAGE_ALREADY_VALID
        if at < latest.valid_from:
            return Reason.PLAN_EVENT_OUT_OF_ORDER
    flags = state.discount_flags() if state is not None else DiscountFlags(False, False, False)
    price = purchase_price(version, flags, tier, period, currency, auto_renew)
    if isinstance(price, Reason):
        return Reason.UNKNOWN_TIER if version.tier(tier) is None else price
    refreshes = state.refreshes if state is not None else ()
    package = new_package(version, tier, period, currency, at, at, 0, event_id, refreshes)
    if isinstance(package, Reason):
        return package
    return PurchaseDecision(price, package)


def decide_upgrade(state: AccountState | None, tier: str, period: str, currency: str,
                   auto_renew: bool, at: datetime, catalog: Catalog,
                   event_id: str = "", memory: EventMemory = NO_MEMORY) -> UpgradeDecision | Reason:
    """Decide an upgrade at `at` to a strictly higher tier (`auto_renew` is not used).

    `memory` gives the valid package's usage entries, read to split it exactly at `at`.
    """
    version = catalog.version_at(at)
    if version is None:
        return Reason.NO_CATALOG_VERSION
    if version.tier(tier) is None:
        return Reason.UNKNOWN_TIER
    index = state.package_index_at(at) if state is not None else None
    if state is None or index is None:
        return Reason.NO_VALID_PACKAGE
    if index != len(state.packages) - 1:
        return Reason.PLAN_EVENT_OUT_OF_ORDER
    old = state.packages[index]
    if version.tier(old.tier) is None:
        return Reason.UNKNOWN_TIER
    if version.is_top_tier(old.tier):
        return Reason.UPGRADE_FROM_MAX
    if version.tier_rank(tier) <= version.tier_rank(old.tier):
        return Reason.DOWNGRADE_NOT_ALLOWED
    new_price = version.list_price(tier, period, currency)
    old_price = old_list_price(catalog, old, currency)
    if new_price is None or old_price is None:
        return Reason.UNKNOWN_PRICE
    closed, moved = old.split_at(at, state.refreshes, memory.usage_entries(state.account_id, old.opened_by))
    amount = upgrade_price(new_price, old_price, closed.remaining_micro, old.credits_limit_micro)
    package = new_package(version, tier, period, currency, at, at, 0, event_id, state.refreshes)
    if isinstance(package, Reason):
        return package
    if any(instant >= package.valid_until for instant, _micro in moved):
        # Usage already recorded after the new package would end (a shorter period):
        # it would belong to no package. Refused rather than dropping charges.
        return Reason.UPGRADE_ORPHANS_USAGE
    return UpgradeDecision(PriceQuote(amount, currency, None), index, package, closed, moved)


def quote(state: AccountState | None, action: str, tier: str, period: str, currency: str,
          auto_renew: bool, at: datetime, catalog: Catalog, memory: EventMemory = NO_MEMORY) -> dict:
    """What the account would pay at `at` for a purchase or an upgrade (the quote JSON).

    Returns {"allowed": true, "amount", "currency", "discount"} or
    {"allowed": false, "reason", "detail"}. The same decisions as `step`, so a quote
    never disagrees with what the ledger would accept. `memory`: the account's event
    memory (an upgrade's price splits the valid package's usage).
    """
    if action == "purchase":
        outcome = decide_purchase(state, tier, period, currency, auto_renew, at, catalog)
    elif action == "upgrade":
        outcome = decide_upgrade(state, tier, period, currency, auto_renew, at, catalog, memory=memory)
    else:
        raise ValueError(f"unknown action {action!r}")
    if isinstance(outcome, Reason):
        return {"allowed": False, "reason": outcome.value, "detail": outcome.explanation}
    price = outcome.price
    return {"allowed": True, "amount": format(price.amount, "f"), "currency": price.currency,
            "discount": price.discount}
