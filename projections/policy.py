"""The usage policy's topics folded into rows: the fold (`projections.fold`) routes them here.

Two topics, read tolerantly like the ledger's facts (`projections.facts`: the fields
needed, extra ones ignored):
- `tokenplan.policy-facts` (schemas.policy.PolicyFact): every policy.warning,
  key.suspended and key.reinstated becomes a `policy_events` row, and the latest
  suspension or reinstatement of a key its `policy_key_state` (latest = record position:
  the worker keys the facts by account, so one key's facts share a partition);
- `tokenplan.policy` (schemas.policy.PolicyViolation), kept light: a counter per
  account x key x rule x hour (`policy_violations_hourly`) and the latest
  `RECENT_PER_KEY` violations of each key (`policy_violations_recent`). The topic's
  key.reinstated inputs are skipped: their outcome is the fact of the same name.

Both are pure functions of the records (counters are sums, "latest" an order over the
records' own fields), so the re-projection identity holds for them too.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import Connection, delete, desc, select

from projections.facts import Record, hour_start
from projections.store import upsert, upsert_add
from projections.tables import (policy_events, policy_key_state, policy_violations_hourly,
                                policy_violations_recent)
from schemas.events import parse_instant

__all__ = ["POLICY_KINDS", "RECENT_PER_KEY", "PolicyEvent", "Violation", "PolicyInputSkipped", "PolicyBatch",
           "decode_policy", "policy_fact_id"]

#: Short names of the topics read here.
POLICY_KINDS = ("policy", "policy-facts")
#: Violations kept per key (the account page lists them; the counters keep the rest).
RECENT_PER_KEY = 20
#: The fact types that set a key's state, and the state they set.
STATE_OF = {"key.suspended": "suspended", "key.reinstated": "active"}
FACT_TYPES = ("policy.warning", "key.suspended", "key.reinstated")


@dataclass(frozen=True)
class PolicyEvent:
    """A PolicyFact as the projection needs it."""

    event_id: str
    type: str
    cause_event_id: str
    occurred_at: datetime
    account_id: str
    key_id: str
    violations: int
    window_s: int
    rules: dict[str, int]
    request_event_ids: list[str]
    message: str


@dataclass(frozen=True)
class Violation:
    """A policy.violation (a non-coding request of a key)."""

    event_id: str
    occurred_at: datetime
    account_id: str
    key_id: str
    request_event_id: str
    rule: str
    rules_version: str
    tool: str | None
    client: str | None


@dataclass(frozen=True)
class PolicyInputSkipped:
    """An input of tokenplan.policy the projection does not fold (an operator's key.reinstated)."""

    type: str


def _object(record: Record) -> dict:
    if record.value is None:
        raise ValueError("empty record value")
    data = orjson.loads(record.value)
    if not isinstance(data, dict):
        raise ValueError("record value is not a JSON object")
    return data


def _fact(data: dict) -> PolicyEvent:
    if data["type"] not in FACT_TYPES:
        raise ValueError(f"unexpected policy fact type {data['type']!r}")
    rules = data.get("rules") or {}
    requests = data.get("request_event_ids") or []
    if not isinstance(rules, dict) or not isinstance(requests, list):
        raise ValueError("rules must be an object and request_event_ids a list")
    return PolicyEvent(
        event_id=str(data["event_id"]), type=data["type"], cause_event_id=str(data["cause_event_id"]),
        occurred_at=parse_instant(data["occurred_at"]), account_id=str(data["account_id"]),
        key_id=str(data["key_id"]), violations=int(data.get("violations") or 0),
        window_s=int(data.get("window_s") or 0), rules={str(k): int(v) for k, v in rules.items()},
        request_event_ids=[str(r) for r in requests], message=str(data.get("message") or ""))


def _violation(data: dict) -> Violation | PolicyInputSkipped:
    if data["type"] == "key.reinstated":
        return PolicyInputSkipped(data["type"])
    if data["type"] != "policy.violation":
        raise ValueError(f"unexpected policy input type {data['type']!r}")
    classification = data["classification"]
    if not isinstance(classification, dict):
        raise ValueError("classification is not an object")
    return Violation(
        event_id=str(data["event_id"]), occurred_at=parse_instant(data["occurred_at"]),
        account_id=str(data["account_id"]), key_id=str(data["key_id"]),
        request_event_id=str(data["request_event_id"]), rule=str(classification["rule"]),
        rules_version=str(classification.get("rules_version") or ""), tool=classification.get("tool"),
        client=data.get("client"))


def decode_policy(record: Record) -> PolicyEvent | Violation | PolicyInputSkipped:
    """The record's value as the fact of its topic; raises ValueError/KeyError when unusable."""
    data = _object(record)
    if record.kind == "policy-facts":
        return _fact(data)
    if record.kind == "policy":
        return _violation(data)
    raise ValueError(f"not a policy topic: {record.kind!r}")


def policy_fact_id(fact: object) -> str | None:
    """The id `applied_events` remembers (None: nothing to count twice)."""
    if isinstance(fact, (PolicyEvent, Violation)):
        return fact.event_id
    return None


def _order(row: dict) -> tuple:
    """Latest violation = greatest (at, partition, offset, event_id): a total order on the records' own fields."""
    return (row["at"], row["fact_partition"], row["fact_offset"], row["event_id"])


class PolicyBatch:
    """The policy rows one batch adds, gathered in record order, then written in a few statements."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.states: dict[str, dict] = {}
        self.hourly: dict[tuple, dict] = {}
        self.recent: dict[str, list[dict]] = {}

    def add(self, fact: object, record: Record) -> None:
        if isinstance(fact, PolicyEvent):
            self._event(fact, record)
        elif isinstance(fact, Violation):
            self._violation(fact, record)

    def _event(self, fact: PolicyEvent, record: Record) -> None:
        self.events.append({
            "event_id": fact.event_id, "account_id": fact.account_id, "key_id": fact.key_id, "type": fact.type,
            "at": fact.occurred_at, "cause_event_id": fact.cause_event_id, "violations": fact.violations,
            "window_s": fact.window_s, "rules": orjson.dumps(fact.rules, option=orjson.OPT_SORT_KEYS).decode(),
            "request_event_ids": orjson.dumps(fact.request_event_ids).decode(), "message": fact.message,
            "fact_partition": record.partition, "fact_offset": record.offset})
        status = STATE_OF.get(fact.type)
        if status is not None:  # records arrive in offset order: the last one of the batch is the latest
            self.states[fact.key_id] = {
                "key_id": fact.key_id, "account_id": fact.account_id, "status": status,
                "changed_at": fact.occurred_at, "event_id": fact.event_id, "message": fact.message,
                "fact_partition": record.partition, "fact_offset": record.offset}

    def _violation(self, fact: Violation, record: Record) -> None:
        hour = hour_start(fact.occurred_at)
        key = (fact.account_id, fact.key_id, fact.rule, hour)
        row = self.hourly.get(key)
        if row is None:
            self.hourly[key] = {"account_id": fact.account_id, "key_id": fact.key_id, "rule": fact.rule,
                                "hour_start": hour, "count": 1}
        else:
            row["count"] += 1
        self.recent.setdefault(fact.key_id, []).append({
            "event_id": fact.event_id, "account_id": fact.account_id, "key_id": fact.key_id, "at": fact.occurred_at,
            "request_event_id": fact.request_event_id, "rule": fact.rule, "rules_version": fact.rules_version,
            "tool": fact.tool, "client": fact.client, "fact_partition": record.partition,
            "fact_offset": record.offset})

    def write(self, connection: Connection) -> None:
        upsert(connection, policy_events, self.events, keys=("event_id",), replace=())
        upsert(connection, policy_key_state, list(self.states.values()), keys=("key_id",))
        upsert_add(connection, policy_violations_hourly, list(self.hourly.values()),
                   keys=("account_id", "key_id", "rule", "hour_start"), add=("count",))
        self._write_recent(connection)

    def _write_recent(self, connection: Connection) -> None:
        """Insert the batch's latest violations per key, then keep only the key's latest RECENT_PER_KEY:
        the kept set is the top of all the key's violations, wherever batches were cut."""
        table = policy_violations_recent.c
        rows = [row for key_rows in self.recent.values()
                for row in sorted(key_rows, key=_order, reverse=True)[:RECENT_PER_KEY]]
        upsert(connection, policy_violations_recent, rows, keys=("event_id",), replace=())
        for key_id in sorted(self.recent):
            stale = connection.execute(
                select(table.event_id).where(table.key_id == key_id)
                .order_by(desc(table.at), desc(table.fact_partition), desc(table.fact_offset), desc(table.event_id))
                .offset(RECENT_PER_KEY)).scalars().all()
            if stale:
                connection.execute(delete(policy_violations_recent).where(table.event_id.in_(stale)))
