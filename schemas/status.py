"""The quota status contract: the body of `GET /accounts/{id}/quota` and of each
`tokenplan.quota-status` record (compacted, keyed by account_id).

Gateways decide allow/deny from it (`allowed`), and dashboards read it. Credits are
decimal strings (exact: a JSON float would not be), instants RFC 3339 'Z' strings.
`as_of` says how fresh the answer is: when it was computed, and the event time and
ledger-log position of the last event applied for the account.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Instant

__all__ = ["AsOf", "LogPosition", "QuotaStatus", "SourcePosition"]

#: Credits as written by the ledger: a non-negative decimal, never in exponent form.
Credits = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")]
Status = Literal["active", "exhausted", "expired", "none"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogPosition(_Body):
    """Where the ledger read the event: ledger-log partition, offset, index inside a v2 batch."""

    partition: int
    offset: int
    index: int | None = None


class SourcePosition(_Body):
    """Where the event entered: its input topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class AsOf(_Body):
    """How fresh the answer is."""

    computed_at: Instant
    event_time: Instant | None
    log: LogPosition | None
    source: SourcePosition | None


class QuotaStatus(_Body):
    """One account's allow/deny view (status `none` and null package fields for an unknown one)."""

    account_id: str
    status: Status
    allowed: bool
    tier: str | None
    period: str | None
    credits_limit: Credits | None
    credits_used: Credits | None
    credits_remaining: Credits | None
    valid_from: Instant | None
    valid_until: Instant | None
    as_of: AsOf
    #: The worker that answered (lookups only; the status topic has none).
    served_by: str | None = None
