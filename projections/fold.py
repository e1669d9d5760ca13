"""The fold: one fetched batch of out-topic records -> rows, in the caller's transaction.

Idempotent twice over, so a crash or a redelivery never double-counts:
- the next offsets are written with the rows (`projector_offsets`), and records below
  the stored offset are ignored;
- every fact's id goes into `applied_events`; a fact already there (redelivered by the
  ledger at another offset) changes nothing.
What it writes depends only on the facts and their per-partition order (counters are
sums, "latest" is decided by record position), never on where a batch was cut: so
projecting again from offset 0 gives the same tables.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import orjson
from sqlalchemy import Connection, delete, select, update

from projections.alerts import Alert, Arm, decide, policy_alert
from projections.facts import (BalanceFact, DeadLetter, QuotaFact, Record, StatusRecord, decode, hour_start)
from projections.policy import POLICY_KINDS, PolicyBatch, PolicyEvent, decode_policy, policy_fact_id
from projections.store import load_offsets, save_offsets, upsert, upsert_add
from projections.tables import (alert_arms, alerts, applied_events, balance_timeline, dead_letter_reasons,
                                dead_letters, fleet_usage_hourly, package_history, quota_events, quota_status,
                                usage_hourly, webhook_deliveries)
from schemas.events import parse_instant

__all__ = ["Fold", "BatchResult", "COUNTERS"]

log = logging.getLogger(__name__)

#: The additive measures of the usage tables.
COUNTERS = ("requests", "input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens", "credits",
            "credits_offpeak", "credits_saved")
#: Ids per `IN (...)` query (SQLite's bound-parameter limit is far above; PostgreSQL has none that matters).
IN_CHUNK = 500
_UNUSABLE = (ValueError, KeyError, TypeError, InvalidOperation, orjson.JSONDecodeError)


@dataclass
class BatchResult:
    """What one batch did (progress lines and tests read it)."""

    folded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    stale: int = 0
    unusable: int = 0
    alerts: list[Alert] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def _chunks(values: Sequence, size: int = IN_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _fact_id(fact: object) -> str | None:
    if isinstance(fact, (BalanceFact, QuotaFact)):
        return fact.event_id
    if isinstance(fact, DeadLetter):
        return fact.dead_letter_id
    return policy_fact_id(fact)  # quota-status records (and policy inputs not folded): nothing to count twice


class _Batch:
    """The rows one batch adds, gathered in record order, then written in a few statements."""

    def __init__(self, thresholds: tuple[int, ...], arms: dict[tuple[str, datetime], dict[int, Arm]]) -> None:
        self.thresholds = thresholds
        self.arms = arms
        self.applied: list[dict] = []
        self.usage: dict[tuple, dict] = {}
        self.fleet: dict[tuple, dict] = {}
        self.timeline: list[dict] = []
        self.packages: dict[tuple, dict] = {}
        self.payments: dict[tuple, dict] = {}
        self.upgrades: list[tuple[str, datetime]] = []
        self.quota: list[dict] = []
        self.exhausted: dict[tuple, dict] = {}
        self.dead: list[dict] = []
        self.status: dict[str, dict | None] = {}
        self.alerts: list[Alert] = []
        self.policy = PolicyBatch()

    # -- balance.changed -------------------------------------------------------------------
    def balance(self, fact: BalanceFact, record: Record) -> None:
        package = fact.package
        key = (fact.account_id, package.valid_from)
        self.timeline.append({
            "event_id": fact.event_id, "account_id": fact.account_id, "package_valid_from": package.valid_from,
            "at": fact.occurred_at, "cause_type": fact.cause_type, "cause_event_id": fact.cause_event_id,
            "credits_charged": fact.credits_charged, "credits_used": fact.credits_used,
            "credits_remaining": fact.credits_remaining, "credits_limit": package.credits_limit,
            "fact_partition": record.partition, "fact_offset": record.offset})
        self.packages[key] = {
            "account_id": fact.account_id, "valid_from": package.valid_from, "valid_until": package.valid_until,
            "tier": package.tier, "period": package.period, "credits_limit": package.credits_limit,
            "credits_used": fact.credits_used, "credits_remaining": fact.credits_remaining, "exhausted": False}
        if fact.amount is not None:
            self.payments[key] = {**self.packages[key], "opened_by": fact.cause_type,
                                  "opened_event_id": fact.cause_event_id, "paid_at": fact.occurred_at,
                                  "amount": fact.amount, "currency": fact.currency, "discount": fact.discount}
            if fact.cause_type == "plan.upgraded":
                self.upgrades.append(key)
        if fact.usage is not None:
            self._usage(fact)
        self.alerts.extend(decide(fact, self.thresholds, self.arms.setdefault(key, {})))

    def _usage(self, fact: BalanceFact) -> None:
        usage = fact.usage
        assert usage is not None
        hour = hour_start(fact.occurred_at)
        offpeak = fact.credits_charged if usage.offpeak else Decimal(0)
        measures = {"requests": 1, "input_cache_hit_tokens": usage.input_cache_hit_tokens,
                    "input_cache_miss_tokens": usage.input_cache_miss_tokens, "output_tokens": usage.output_tokens,
                    "credits": fact.credits_charged, "credits_offpeak": offpeak, "credits_saved": usage.credits_saved}
        for target, key, names in ((self.usage, (fact.account_id, usage.model, hour), ("account_id", "model")),
                                   (self.fleet, (usage.cluster, usage.protocol, hour), ("cluster", "protocol"))):
            row = target.get(key)
            if row is None:
                target[key] = {names[0]: key[0], names[1]: key[1], "hour_start": hour, **measures}
            else:
                for name in COUNTERS:
                    row[name] += measures[name]

    # -- quota-exhausted, rejected, quota-status ---------------------------------------------
    def quota_event(self, fact: QuotaFact) -> None:
        package = fact.package
        self.quota.append({
            "event_id": fact.event_id, "account_id": fact.account_id, "type": fact.type, "at": fact.occurred_at,
            "cause_type": fact.cause_type, "cause_event_id": fact.cause_event_id,
            "package_valid_from": package.valid_from, "tier": package.tier, "credits_used": fact.credits_used,
            "credits_remaining": fact.credits_remaining, "credits_limit": package.credits_limit})
        remaining = fact.credits_remaining
        if remaining is None:
            remaining = max(package.credits_limit - fact.credits_used, Decimal(0))
        self.exhausted[(fact.account_id, package.valid_from)] = {
            "account_id": fact.account_id, "valid_from": package.valid_from, "valid_until": package.valid_until,
            "tier": package.tier, "period": package.period, "credits_limit": package.credits_limit,
            "credits_used": fact.credits_used, "credits_remaining": remaining,
            "exhausted": fact.type == "quota.exhausted"}

    def dead_letter(self, fact: DeadLetter, record: Record) -> None:
        self.dead.append({
            "dead_letter_id": fact.dead_letter_id, "reason": fact.reason, "detail": fact.detail,
            "event_id": fact.event_id, "account_id": fact.account_id, "source_topic": fact.source_topic,
            "source_partition": fact.source_partition, "source_offset": fact.source_offset,
            "rejected_at": fact.rejected_at, "rejected_partition": record.partition,
            "rejected_offset": record.offset})

    def status_record(self, fact: StatusRecord, record: Record) -> None:
        if fact.body is None:
            self.status[fact.account_id] = None
            return
        body, as_of = fact.body, fact.body.get("as_of") or {}
        parse = _instant_or_none
        self.status[fact.account_id] = {
            "account_id": fact.account_id, "status": body["status"], "allowed": bool(body["allowed"]),
            "tier": body.get("tier"), "period": body.get("period"),
            "credits_limit": _decimal_or_none(body.get("credits_limit")),
            "credits_used": _decimal_or_none(body.get("credits_used")),
            "credits_remaining": _decimal_or_none(body.get("credits_remaining")),
            "valid_from": parse(body.get("valid_from")), "valid_until": parse(body.get("valid_until")),
            "computed_at": parse(as_of.get("computed_at")) or datetime.fromtimestamp(record.timestamp_ms / 1000,
                                                                                      timezone.utc),
            "event_time": parse(as_of.get("event_time")),
            "status_partition": record.partition, "status_offset": record.offset}


def _decimal_or_none(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def _instant_or_none(value) -> datetime | None:
    return None if value is None else parse_instant(value)


class Fold:
    """Folds batches of records into the tables; holds only its configuration."""

    def __init__(self, thresholds: tuple[int, ...] = (80, 90, 100), webhook_url: str = "") -> None:
        self.thresholds = thresholds
        self.webhook_url = webhook_url

    def apply(self, connection: Connection, records: Sequence[Record]) -> BatchResult:
        """Fold `records` (any topics, each partition in offset order) and store their offsets."""
        result = BatchResult()
        stored = load_offsets(connection, {record.topic for record in records})
        fresh = []
        for record in records:
            position = (record.topic, record.partition)
            result.offsets[position] = max(result.offsets.get(position, stored.get(position, 0)), record.offset + 1)
            if record.offset < stored.get(position, 0):
                result.stale += 1
            else:
                fresh.append(record)
        decoded = self._decode(fresh, result)
        batch = _Batch(self.thresholds, self._load_arms(connection, decoded))
        already = self._already_applied(connection, [i for _r, f in decoded if (i := _fact_id(f))])
        for record, fact in decoded:
            identifier = _fact_id(fact)
            if identifier is not None:
                if identifier in already:
                    result.duplicates += 1
                    continue
                already.add(identifier)
                batch.applied.append({"event_id": identifier, "topic": record.topic,
                                      "partition": record.partition, "offset": record.offset})
            self._route(batch, record, fact)
            result.folded[record.kind] += 1
        self._write(connection, batch)
        save_offsets(connection, {p: o for p, o in result.offsets.items() if o != stored.get(p)})
        result.alerts = batch.alerts
        return result

    def _decode(self, records: Sequence[Record], result: BatchResult) -> list[tuple[Record, object]]:
        decoded = []
        for record in records:
            try:
                decoded.append((record, decode_policy(record) if record.kind in POLICY_KINDS else decode(record)))
            except _UNUSABLE as error:
                result.unusable += 1
                log.warning("projector: unusable record %s[%d]@%d skipped: %s", record.topic, record.partition,
                            record.offset, error)
        return decoded

    @staticmethod
    def _route(batch: _Batch, record: Record, fact: object) -> None:
        if isinstance(fact, BalanceFact):
            batch.balance(fact, record)
        elif isinstance(fact, QuotaFact):
            batch.quota_event(fact)
        elif isinstance(fact, DeadLetter):
            batch.dead_letter(fact, record)
        elif isinstance(fact, StatusRecord):
            batch.status_record(fact, record)
        else:
            batch.policy.add(fact, record)
            if isinstance(fact, PolicyEvent) and (alert := policy_alert(fact)) is not None:
                batch.alerts.append(alert)

    @staticmethod
    def _already_applied(connection: Connection, identifiers: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(identifiers))):
            query = select(applied_events.c.event_id).where(applied_events.c.event_id.in_(chunk))
            found.update(connection.execute(query).scalars())
        return found

    @staticmethod
    def _load_arms(connection: Connection, decoded: list[tuple[Record, object]]) -> dict:
        accounts = sorted({fact.account_id for _r, fact in decoded if isinstance(fact, BalanceFact)})
        arms: dict[tuple[str, datetime], dict[int, Arm]] = {}
        for chunk in _chunks(accounts):
            for row in connection.execute(select(alert_arms).where(alert_arms.c.account_id.in_(chunk))):
                arms.setdefault((row.account_id, row.package_valid_from), {})[row.threshold] = Arm(
                    row.crossings, row.above)
        return arms

    def _write(self, connection: Connection, batch: _Batch) -> None:
        upsert(connection, applied_events, batch.applied, keys=("event_id",), replace=())
        upsert_add(connection, usage_hourly, list(batch.usage.values()), keys=("account_id", "model", "hour_start"),
                   add=COUNTERS)
        upsert_add(connection, fleet_usage_hourly, list(batch.fleet.values()),
                   keys=("cluster", "protocol", "hour_start"), add=COUNTERS)
        upsert(connection, balance_timeline, batch.timeline, keys=("event_id",), replace=())
        self._write_packages(connection, batch)
        upsert(connection, quota_events, batch.quota, keys=("event_id",), replace=())
        self._write_dead_letters(connection, batch.dead)
        self._write_status(connection, batch.status)
        self._write_alerts(connection, batch)
        batch.policy.write(connection)

    @staticmethod
    def _write_packages(connection: Connection, batch: _Batch) -> None:
        keys = ("account_id", "valid_from")
        state = ("valid_until", "tier", "period", "credits_limit", "credits_used", "credits_remaining")
        upsert(connection, package_history, list(batch.packages.values()), keys=keys, replace=state)
        upsert(connection, package_history, list(batch.payments.values()), keys=keys,
               replace=("opened_by", "opened_event_id", "paid_at", "amount", "currency", "discount"))
        upsert(connection, package_history, list(batch.exhausted.values()), keys=keys, replace=("exhausted",))
        for account_id, starts in batch.upgrades:
            # An upgrade at t closes the package valid at t (the ledger emits no fact for the old one).
            table = package_history.c
            connection.execute(update(package_history).where(
                table.account_id == account_id, table.valid_from < starts, table.valid_until > starts,
            ).values(valid_until=starts))

    @staticmethod
    def _write_dead_letters(connection: Connection, rows: list[dict]) -> None:
        if not rows:
            return
        upsert(connection, dead_letters, rows, keys=("dead_letter_id",), replace=())
        by_reason: dict[str, dict] = {}
        for reason in sorted({row["reason"] for row in rows}):
            stored = connection.execute(select(dead_letter_reasons).where(
                dead_letter_reasons.c.reason == reason)).mappings().first()
            if stored is not None:
                by_reason[reason] = dict(stored)
        for row in rows:
            current = by_reason.get(row["reason"])
            candidate = {"reason": row["reason"], "count": 1, "latest_at": row["rejected_at"],
                         "latest_partition": row["rejected_partition"], "latest_offset": row["rejected_offset"],
                         "latest_dead_letter_id": row["dead_letter_id"], "latest_event_id": row["event_id"],
                         "latest_account_id": row["account_id"], "latest_detail": row["detail"]}
            if current is None:
                by_reason[row["reason"]] = candidate
                continue
            count = current["count"] + 1
            order = ("latest_at", "latest_partition", "latest_offset")
            if tuple(candidate[k] for k in order) > tuple(current[k] for k in order):
                current.update(candidate)
            current["count"] = count
        upsert(connection, dead_letter_reasons, list(by_reason.values()), keys=("reason",))

    @staticmethod
    def _write_status(connection: Connection, status: dict[str, dict | None]) -> None:
        gone = [account for account, row in status.items() if row is None]
        if gone:
            connection.execute(delete(quota_status).where(quota_status.c.account_id.in_(gone)))
        upsert(connection, quota_status, [row for row in status.values() if row is not None], keys=("account_id",))

    def _write_alerts(self, connection: Connection, batch: _Batch) -> None:
        arm_rows = [{"account_id": account, "package_valid_from": starts, "threshold": threshold,
                     "crossings": arm.crossings, "above": arm.above}
                    for (account, starts), by_threshold in batch.arms.items()
                    for threshold, arm in by_threshold.items()]
        upsert(connection, alert_arms, arm_rows, keys=("account_id", "package_valid_from", "threshold"))
        upsert(connection, alerts, [alert.row() for alert in batch.alerts], keys=("alert_id",), replace=())
        if self.webhook_url and batch.alerts:
            now = datetime.now(timezone.utc)
            upsert(connection, webhook_deliveries, [
                {"alert_id": alert.alert_id, "url": self.webhook_url, "status": "pending", "attempts": 0,
                 "last_status_code": None, "last_error": None, "last_attempt_at": None, "next_attempt_at": now,
                 "delivered_at": None} for alert in batch.alerts], keys=("alert_id",), replace=())
