"""Out-topic records as the ledger writes them, and table dumps, for the projection tests."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
from sqlalchemy import Connection, select

from projections.facts import Record
from projections.tables import READ_MODELS, alerts

_offsets: dict[tuple[str, int], itertools.count] = {}
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)


def instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def package(valid_from: datetime = T0, limit: str = "4100000000", tier: str = "lite",
            valid_until: datetime | None = None) -> dict:
    return {"tier": tier, "period": "monthly", "valid_from": instant(valid_from),
            "valid_until": instant(valid_until or valid_from + timedelta(days=30)), "credits_limit": limit}


def balance(event_id: str, at: datetime, used: str, charged: str = "0", account: str = "alice",
            cause_type: str = "usage", pkg: dict | None = None, usage: dict | None = None,
            amount: str | None = None, discount: str | None = None, **extra) -> dict:
    pkg = pkg or package()
    remaining = max(Decimal(pkg["credits_limit"]) - Decimal(used), Decimal(0))
    fact = {"event_id": event_id, "cause_event_id": f"cause-{event_id}", "cause_type": cause_type,
            "account_id": account, "occurred_at": instant(at), "type": "balance.changed", "package": pkg,
            "credits_charged": charged, "credits_used": used, "credits_remaining": str(remaining),
            "amount": amount, "currency": None if amount is None else "USD", "discount": discount}
    if usage is not None:
        fact["usage"] = usage
        fact["schema_version"] = 2
    fact.update(extra)
    return fact


def usage_object(model: str = "MiMo-V2.5-Pro", hit: int = 0, miss: int = 0, output: int = 0, offpeak: bool = False,
                 saved: str = "0", cluster: str = "sgp", protocol: str = "anthropic") -> dict:
    return {"model": model, "input_cache_hit_tokens": hit, "input_cache_miss_tokens": miss, "output_tokens": output,
            "coefficient": "0.8" if offpeak else "1", "offpeak": offpeak, "credits_saved": saved,
            "cluster": cluster, "protocol": protocol, "key_id": "key-1"}


def quota(event_id: str, kind: str, at: datetime, used: str, account: str = "alice", pkg: dict | None = None) -> dict:
    fact = {"event_id": event_id, "cause_event_id": f"cause-{event_id}", "cause_type": "usage",
            "account_id": account, "occurred_at": instant(at), "type": kind, "package": pkg or package(),
            "credits_used": used}
    if kind == "quota.restored":
        fact["credits_remaining"] = "0"
    return fact


def rejected(reason: str, event_id: str, log_offset: int, account: str = "alice") -> dict:
    return {"type": "event.rejected", "reason": reason, "detail": f"because {reason}", "event_id": event_id,
            "account_id": account, "source": {"topic": "tokenplan.usage", "partition": 0, "offset": log_offset},
            "log": {"partition": 0, "offset": log_offset}, "payload": "{}", "payload_encoding": "utf-8"}


def status(account: str, remaining: str, used: str = "0", state: str = "active") -> dict:
    return {"account_id": account, "status": state, "allowed": state == "active", "tier": "lite",
            "period": "monthly", "credits_limit": "4100000000", "credits_used": used,
            "credits_remaining": remaining, "valid_from": instant(T0), "valid_until": instant(T0 + timedelta(days=30)),
            "as_of": {"computed_at": instant(T0), "event_time": instant(T0), "log": None, "source": None}}


def record(kind: str, value: dict | None, partition: int = 0, offset: int | None = None,
           key: str = "alice", timestamp_ms: int = 1_777_000_000_000) -> Record:
    """A record of `tokenplan.<kind>` at the next offset of its partition (or the one given)."""
    topic = f"tokenplan.{kind}"
    counter = _offsets.setdefault((topic, partition), itertools.count())
    position = next(counter) if offset is None else offset
    return Record(kind, topic, partition, position, timestamp_ms, None if value is None else orjson.dumps(value),
                  key.encode())


def reset_offsets() -> None:
    _offsets.clear()


def dump(connection: Connection) -> dict[str, list[tuple]]:
    """Every read-model row (and alerts without published_at), sorted: for identity checks."""
    tables = {table.name: sorted(tuple(row) for row in connection.execute(select(table))) for table in READ_MODELS}
    columns = [column for column in alerts.c if column.name != "published_at"]
    tables["alerts"] = sorted(tuple(row) for row in connection.execute(select(*columns)))
    return tables
