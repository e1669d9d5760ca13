"""Reading the out-topics' JSON into plain values, tolerantly.

Why not the pydantic models of `schemas.outputs`: they forbid extra fields, and the
contract grows (schema_version 2 adds a `usage` object to balance.changed). A
projection must keep reading facts written before and after such a change, so it reads
the fields it needs and ignores the rest. Decimals stay `Decimal` (exact), instants
become aware UTC datetimes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

from schemas.events import parse_instant

__all__ = ["Record", "Package", "Usage", "BalanceFact", "QuotaFact", "DeadLetter", "StatusRecord", "decode",
           "hour_start", "is_offpeak", "UNKNOWN", "OFFPEAK_START_HOUR"]

#: Model, cluster, protocol of a charge whose fact has no usage object (written before schema_version 2).
UNKNOWN = "unknown"
#: Off-peak is UTC [16:00, 24:00): Beijing 00:00-08:00 (docs/rules.md).
OFFPEAK_START_HOUR = 16


def hour_start(instant: datetime) -> datetime:
    """The UTC hour an instant falls in."""
    return instant.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def is_offpeak(instant: datetime) -> bool:
    """True in UTC [16:00, 24:00), where the ledger charges 0.8x."""
    return instant.astimezone(timezone.utc).hour >= OFFPEAK_START_HOUR


@dataclass(frozen=True)
class Record:
    """One Kafka record as the projector got it (short topic name, position, timestamp)."""

    kind: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True)
class Package:
    tier: str
    period: str
    valid_from: datetime
    valid_until: datetime
    credits_limit: Decimal


@dataclass(frozen=True)
class Usage:
    """What a charge used (balance.changed's `usage`, or the defaults for older facts)."""

    model: str
    input_cache_hit_tokens: int
    input_cache_miss_tokens: int
    output_tokens: int
    offpeak: bool
    credits_saved: Decimal
    cluster: str
    protocol: str
    key_id: str | None


@dataclass(frozen=True)
class BalanceFact:
    event_id: str
    account_id: str
    cause_event_id: str
    cause_type: str
    occurred_at: datetime
    package: Package
    credits_charged: Decimal
    credits_used: Decimal
    credits_remaining: Decimal
    amount: Decimal | None
    currency: str | None
    discount: str | None
    usage: Usage | None


@dataclass(frozen=True)
class QuotaFact:
    event_id: str
    type: str
    account_id: str
    cause_event_id: str
    cause_type: str
    occurred_at: datetime
    package: Package
    credits_used: Decimal
    credits_remaining: Decimal | None


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: str
    reason: str
    detail: str
    event_id: str | None
    account_id: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    rejected_at: datetime


@dataclass(frozen=True)
class StatusRecord:
    account_id: str
    body: dict[str, Any] | None  # None: a tombstone (the account's status was deleted)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return Decimal(value)
    raise ValueError(f"not a decimal string: {value!r}")


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else _decimal(value)


def _package(data: dict) -> Package:
    return Package(tier=data["tier"], period=data["period"], valid_from=parse_instant(data["valid_from"]),
                   valid_until=parse_instant(data["valid_until"]), credits_limit=_decimal(data["credits_limit"]))


def _usage(data: dict | None, occurred_at: datetime) -> Usage:
    """The usage object, or the defaults of a fact written before it existed."""
    if data is None:
        return Usage(UNKNOWN, 0, 0, 0, is_offpeak(occurred_at), Decimal(0), UNKNOWN, UNKNOWN, None)
    offpeak = data.get("offpeak")
    return Usage(
        model=str(data.get("model") or UNKNOWN),
        input_cache_hit_tokens=int(data.get("input_cache_hit_tokens") or 0),
        input_cache_miss_tokens=int(data.get("input_cache_miss_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        offpeak=is_offpeak(occurred_at) if offpeak is None else bool(offpeak),
        credits_saved=_decimal(data.get("credits_saved") or "0"),
        cluster=str(data.get("cluster") or UNKNOWN),
        protocol=str(data.get("protocol") or UNKNOWN),
        key_id=data.get("key_id"),
    )


def _balance(data: dict) -> BalanceFact:
    occurred_at = parse_instant(data["occurred_at"])
    is_charge = data["cause_type"] == "usage"
    return BalanceFact(
        event_id=data["event_id"], account_id=data["account_id"], cause_event_id=data["cause_event_id"],
        cause_type=data["cause_type"], occurred_at=occurred_at, package=_package(data["package"]),
        credits_charged=_decimal(data["credits_charged"]), credits_used=_decimal(data["credits_used"]),
        credits_remaining=_decimal(data["credits_remaining"]), amount=_optional_decimal(data.get("amount")),
        currency=data.get("currency"), discount=data.get("discount"),
        usage=_usage(data.get("usage"), occurred_at) if is_charge else None)


def _quota(data: dict) -> QuotaFact:
    if data["type"] not in ("quota.exhausted", "quota.restored"):
        raise ValueError(f"unexpected fact type {data['type']!r}")
    return QuotaFact(
        event_id=data["event_id"], type=data["type"], account_id=data["account_id"],
        cause_event_id=data["cause_event_id"], cause_type=data["cause_type"],
        occurred_at=parse_instant(data["occurred_at"]), package=_package(data["package"]),
        credits_used=_decimal(data["credits_used"]), credits_remaining=_optional_decimal(data.get("credits_remaining")))


def dead_letter_id(data: dict) -> str:
    """Same rejection (reason, event, source and ledger-log position) -> same id, at any offset."""
    key = orjson.dumps([data.get("reason"), data.get("event_id"), data.get("source"), data.get("log")],
                       option=orjson.OPT_SORT_KEYS)
    return "dl-" + hashlib.blake2b(key, digest_size=16).hexdigest()


def _dead_letter(data: dict, timestamp_ms: int) -> DeadLetter:
    source = data.get("source") or {}
    return DeadLetter(
        dead_letter_id=dead_letter_id(data), reason=str(data["reason"]), detail=str(data.get("detail") or ""),
        event_id=data.get("event_id"), account_id=data.get("account_id"), source_topic=source.get("topic"),
        source_partition=source.get("partition"), source_offset=source.get("offset"),
        rejected_at=datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=timestamp_ms))


def decode(record: Record) -> BalanceFact | QuotaFact | DeadLetter | StatusRecord:
    """The record's value as the fact of its topic; raises ValueError/KeyError when unusable."""
    if record.kind == "quota-status":
        if record.value is None:
            if record.key is None:
                raise ValueError("a quota-status tombstone without a key")
            return StatusRecord(record.key.decode(), None)
        body = orjson.loads(record.value)
        return StatusRecord(body["account_id"], body)
    if record.value is None:
        raise ValueError("empty record value")
    data = orjson.loads(record.value)
    if not isinstance(data, dict):
        raise ValueError("record value is not a JSON object")
    if record.kind == "balance-changed":
        return _balance(data)
    if record.kind == "quota-exhausted":
        return _quota(data)
    if record.kind == "rejected":
        return _dead_letter(data, record.timestamp_ms)
    raise ValueError(f"the projector does not read {record.kind!r}")
