"""Output facts the ledger emits (issue 4's out-topics), kept deliberately simple.

Each carries its own deterministic `event_id`, derived from the cause's
`event_id` (see `streams.ledger.account.derive_event_id`), so a redelivered
input produces the same output ids and consumers can dedupe. Credits and
money are decimals, serialized as strings in JSON.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.events import Instant

__all__ = ["BalanceChanged", "Fact", "PackageRef", "QuotaExhausted", "QuotaRestored"]


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    cause_event_id: str
    cause_type: str
    account_id: str
    occurred_at: Instant


class PackageRef(BaseModel):
    """Which package period a fact is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: str
    period: str
    valid_from: Instant
    valid_until: Instant
    credits_limit: Decimal


class BalanceChanged(_Fact):
    """One applied charge or package change: the package's balance after it."""

    type: Literal["balance.changed"] = "balance.changed"
    package: PackageRef
    credits_charged: Decimal
    credits_used: Decimal
    credits_remaining: Decimal
    amount: Decimal | None = None
    currency: str | None = None
    discount: str | None = None


class QuotaExhausted(_Fact):
    """The package crossed into used >= limit: gateways must stop service."""

    type: Literal["quota.exhausted"] = "quota.exhausted"
    package: PackageRef
    credits_used: Decimal


class QuotaRestored(_Fact):
    """A purchase, upgrade, renewal or refresh lifted an exhaustion block."""

    type: Literal["quota.restored"] = "quota.restored"
    package: PackageRef
    credits_used: Decimal
    credits_remaining: Decimal


Fact = BalanceChanged | QuotaExhausted | QuotaRestored
