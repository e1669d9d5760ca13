"""Output facts of one step: compact records while the step runs, models (or JSON) after.

A step records what happened (`FactRecords`: kind, the package as it was, the charge,
the price, a usage charge's `Rating`); `materialize` builds the `schemas.outputs` models,
and `fact_json` writes the same JSON without them (the worker's hot path). Each fact's
id is derived from its cause (`derive_event_id`), so a redelivered cause yields the same ids.
"""
from __future__ import annotations

from datetime import datetime

from schemas.events import Event, Usage
from schemas.outputs import (BALANCE_CHANGED_VERSION, BalanceChanged, PackageRef, QuotaExhausted,
                             QuotaRestored, UsageDetail)
from streams.ledger.fact_ids import derive_event_id
from streams.ledger.fact_json import fact_payloads
from streams.ledger.memory import EventMemory
from streams.ledger.packages import Entries, Package
from streams.ledger.prices import PriceQuote
from streams.ledger.rating import Rating
from streams.ledger.units import from_micro

__all__ = ["FACT_TYPES", "Fact", "FactRecord", "FactRecords", "derive_event_id", "package_ref",
           "usage_detail"]

Fact = BalanceChanged | QuotaExhausted | QuotaRestored


#: Fact types by record kind.
FACT_TYPES = {"bc": "balance.changed", "qe": "quota.exhausted", "qr": "quota.restored"}

#: (kind, package, micro-credits charged, price, rating): the rating only on a usage charge.
FactRecord = tuple[str, Package, int, PriceQuote | None, Rating | None]


def package_ref(package: Package) -> PackageRef:
    """The package part of a fact."""
    return PackageRef(
        tier=package.tier, period=package.period, valid_from=package.valid_from,
        valid_until=package.valid_until, credits_limit=from_micro(package.credits_limit_micro))


def usage_detail(usage: Usage, rating: Rating) -> UsageDetail:
    """The `usage` part of a balance.changed: the cause's counts and where, and its rating."""
    _, coefficient, offpeak, saved_micro = rating
    return UsageDetail(
        model=usage.model, input_cache_hit_tokens=usage.input_cache_hit_tokens,
        input_cache_miss_tokens=usage.input_cache_miss_tokens, output_tokens=usage.output_tokens,
        coefficient=coefficient, offpeak=offpeak, credits_saved=from_micro(saved_micro),
        cluster=usage.cluster, protocol=usage.protocol, key_id=usage.key_id)


class FactRecords:
    """Collects the facts of one step as compact records; `materialize` builds the models.

    Packages are never changed after construction, so keeping a reference
    records the balance exactly as it was when the fact happened.
    """

    __slots__ = ("account_id", "event", "records", "appended", "forgotten", "memory")

    def __init__(self, account_id: str, event: Event, memory: EventMemory) -> None:
        self.account_id = account_id
        self.event = event
        self.records: list[FactRecord] = []
        #: What the caller writes to its event memory (see StepResult).
        self.appended: list[tuple[str, datetime, int]] = []
        self.forgotten: list[str] = []
        self.memory = memory

    def entries(self, package: Package) -> Entries:
        """The package's usage entries: the memory's, plus those this step appended."""
        entries = self.memory.usage_entries(self.account_id, package.opened_by)
        entries.extend((instant, micro) for package_id, instant, micro in self.appended
                       if package_id == package.opened_by)
        return entries

    def balance(self, package: Package, charged_micro: int = 0,
                price: PriceQuote | None = None) -> None:
        """A balance change that is not a usage charge (those `_usage_packages` records)."""
        self.records.append(("bc", package, charged_micro, price, None))

    def exhausted(self, package: Package) -> None:
        self.records.append(("qe", package, 0, None, None))

    def restored(self, package: Package) -> None:
        self.records.append(("qr", package, 0, None, None))

    def materialize(self) -> list[Fact]:
        """The output models, with ids derived from (kind, account, cause, ordinal)."""
        return [self._build(ordinal, *record) for ordinal, record in enumerate(self.records)]

    def payloads(self) -> list[tuple[str, bytes]]:
        """(type, JSON) of each fact, exactly `model_dump_json` of `materialize`'s models
        (`fact_json`: serialized from the compact records, without building the models)."""
        return fact_payloads(self)

    def _build(self, ordinal: int, kind: str, package: Package, charged_micro: int,
               price: PriceQuote | None, rating: Rating | None) -> Fact:
        common = {
            "event_id": derive_event_id(kind, self.account_id, self.event.event_id, ordinal),
            "cause_event_id": self.event.event_id, "cause_type": self.event.type,
            "account_id": self.account_id, "occurred_at": self.event.occurred_at,
            "package": package_ref(package), "credits_used": from_micro(package.used_micro),
        }
        if kind == "qe":
            return QuotaExhausted(**common)
        remaining = from_micro(package.remaining_micro)
        if kind == "qr":
            return QuotaRestored(**common, credits_remaining=remaining)
        return BalanceChanged(
            **common, schema_version=BALANCE_CHANGED_VERSION,
            credits_charged=from_micro(charged_micro), credits_remaining=remaining,
            amount=None if price is None else price.amount,
            currency=None if price is None else price.currency,
            discount=None if price is None else price.discount,
            usage=None if rating is None else usage_detail(self.event, rating))

