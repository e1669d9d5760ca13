"""Output facts the ledger emits (issue 4's out-topics), kept deliberately simple.

Each carries its own deterministic `event_id`, derived from the cause's
`event_id` (see `streams.ledger.account.derive_event_id`), so a redelivered
input produces the same output ids and consumers can dedupe. Credits and
money are decimals, serialized as strings in JSON.

Versions: `balance.changed` carries `schema_version` from version 2 on (which added
`usage`); a record without it is version 1 and reads as such.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import Instant

__all__ = ["BALANCE_CHANGED_VERSION", "BalanceChanged", "Fact", "PackageRef", "QuotaExhausted",
           "QuotaRestored", "UsageDetail"]

#: The `schema_version` the ledger writes on `balance.changed`.
BALANCE_CHANGED_VERSION = 2


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


class UsageDetail(BaseModel):
    """What a usage charge was for, as rated: a projection reads it and never re-rates.

    `coefficient` is the one applied ("1" peak, the catalog's off-peak one, e.g. "0.8");
    `credits_saved` is the charge at coefficient 1 minus the charge (0 at peak).
    `key_id` names the key, never the secret.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    input_cache_hit_tokens: int
    input_cache_miss_tokens: int
    output_tokens: int
    coefficient: Decimal
    offpeak: bool
    credits_saved: Decimal
    cluster: str
    protocol: str
    key_id: str


def _no_schema_default(schema: dict[str, Any]) -> None:
    """Publish no default: a reader filling defaults would stamp old records as version 2."""
    schema.pop("default", None)


class BalanceChanged(_Fact):
    """One applied charge or package change: the package's balance after it.

    `usage` is set when usage caused it (version 2 on), None for plan and refresh changes.
    """

    type: Literal["balance.changed"] = "balance.changed"
    schema_version: int = Field(
        BALANCE_CHANGED_VERSION, ge=1, json_schema_extra=_no_schema_default,
        description="Version of this record's form; a record without it is version 1.")
    package: PackageRef
    credits_charged: Decimal
    credits_used: Decimal
    credits_remaining: Decimal
    amount: Decimal | None = None
    currency: str | None = None
    discount: str | None = None
    usage: UsageDetail | None = None

    @model_validator(mode="before")
    @classmethod
    def _absent_version_is_1(cls, data: Any) -> Any:
        """Records written before version 2 have no `schema_version`: they are version 1.

        So the ledger always passes `schema_version` explicitly (`BALANCE_CHANGED_VERSION`).
        """
        if isinstance(data, dict) and "schema_version" not in data:
            return {**data, "schema_version": 1}
        return data


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
