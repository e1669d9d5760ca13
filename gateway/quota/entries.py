"""What the cache keeps per key and per account: small, parsed once on arrival."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson

from schemas.keys import KeyRecord, KeyStatus

__all__ = ["KeyEntry", "StatusEntry", "parse_status"]


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A key as the gateway needs it: whose it is and whether it may be used."""

    key_id: str
    account_id: str
    status: KeyStatus

    @classmethod
    def of(cls, record: KeyRecord) -> "KeyEntry":
        return cls(record.key_id, record.account_id, record.status)


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One account's latest quota status (schemas.status.QuotaStatus, the fields a decision reads)."""

    status: str  # active | exhausted | expired | none
    allowed: bool
    remaining: Decimal | None
    #: as_of.computed_at (RFC 3339): how fresh the ledger's answer was.
    computed_at: str
    #: as_of.source: the input topic, partition and offset of the last event applied.
    source: tuple[str, int, int] | None


def parse_status(value: bytes) -> StatusEntry:
    """Parse a quota-status record value or a lookup body (ValueError/KeyError when malformed)."""
    body = orjson.loads(value)
    remaining = body.get("credits_remaining")
    as_of = body["as_of"]
    source = as_of.get("source")
    return StatusEntry(
        status=body["status"], allowed=bool(body["allowed"]),
        remaining=Decimal(remaining) if remaining is not None else None,
        computed_at=as_of["computed_at"],
        source=(source["topic"], source["partition"], source["offset"]) if source else None,
    )
