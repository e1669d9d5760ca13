"""Alerts: deciding them (pure), and publishing the decided ones to Kafka.

Two kinds share one channel (the `alerts` table, tokenplan.alerts, the webhook):
- `quota.threshold`: a package period's alert for a threshold is decided when a
  balance.changed takes its used credits from below `threshold`% of the pool to at or
  above it. A refresh that brings used back below a threshold re-arms it: the next
  crossing in the same period is crossing 2 (id suffix `:2`);
- `policy.warning` and `key.suspended`: one alert per such usage-policy fact
  (id `alert:policy:{fact event id}`), so the account hears of a warning before its
  key is suspended, and of the suspension itself.

An alert is decided in the fold's transaction (the `alerts` row, its id the primary
key), so a redelivery or a re-projection decides the same alert with the same id; it is
published after the commit and marked `published_at`; unpublished ones are sent again at
start: at least once, receivers dedupe on `alert_id`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import orjson
from sqlalchemy import Connection, Engine, select, update

from projections.facts import BalanceFact
from projections.policy import PolicyEvent
from projections.tables import alerts
from schemas.events import format_instant

__all__ = ["ALERTS_TOPIC", "QUOTA_KIND", "POLICY_ALERT_KINDS", "Arm", "Alert", "decide", "alert_id", "policy_alert",
           "unpublished", "mark_published"]

#: Short name of the alerts topic (the full name carries TOKENPLAN_TOPIC_PREFIX).
ALERTS_TOPIC = "alerts"
#: Unpublished alerts re-sent per round at start-up.
REPUBLISH_BATCH_MAX = 1000
#: The kind of a threshold alert.
QUOTA_KIND = "quota.threshold"
#: The usage-policy facts that alert the account (a reinstatement is the operator's answer to it).
POLICY_ALERT_KINDS = ("policy.warning", "key.suspended")


@dataclass
class Arm:
    """Per (account, package period, threshold): alerts so far, and whether used is above it."""

    crossings: int = 0
    above: bool = False


@dataclass(frozen=True)
class Alert:
    """One decided alert; the package fields are a threshold alert's, `key_id` a policy alert's."""

    alert_id: str
    account_id: str
    kind: str
    at: datetime
    fact_event_id: str
    body: bytes
    key_id: str | None = None
    package_valid_from: datetime | None = None
    threshold: int | None = None
    crossing: int | None = None
    credits_used: Decimal | None = None
    credits_limit: Decimal | None = None

    def row(self) -> dict:
        return {"alert_id": self.alert_id, "account_id": self.account_id, "kind": self.kind, "at": self.at,
                "fact_event_id": self.fact_event_id, "key_id": self.key_id,
                "package_valid_from": self.package_valid_from, "threshold": self.threshold,
                "crossing": self.crossing, "credits_used": self.credits_used, "credits_limit": self.credits_limit,
                "body": self.body.decode(), "published_at": None}


def alert_id(account_id: str, valid_from: datetime, threshold: int, crossing: int) -> str:
    """Deterministic: alert:{account}:{valid_from}:{threshold}, plus :{crossing} from the second on."""
    base = f"alert:{account_id}:{format_instant(valid_from)}:{threshold}"
    return base if crossing == 1 else f"{base}:{crossing}"


def reached(used: Decimal, limit: Decimal, threshold: int) -> bool:
    """used >= threshold% of limit, exactly (no division)."""
    return limit > 0 and used * 100 >= limit * threshold


def _body(fact: BalanceFact, identifier: str, threshold: int, crossing: int) -> bytes:
    package = fact.package
    return orjson.dumps({
        "type": "quota.alert", "alert_id": identifier, "account_id": fact.account_id,
        "threshold_percent": threshold, "crossing": crossing, "crossed_at": format_instant(fact.occurred_at),
        "fact_event_id": fact.event_id, "credits_used": str(fact.credits_used),
        "credits_limit": str(package.credits_limit), "credits_remaining": str(fact.credits_remaining),
        "package": {"tier": package.tier, "period": package.period, "valid_from": format_instant(package.valid_from),
                    "valid_until": format_instant(package.valid_until)},
    }, option=orjson.OPT_SORT_KEYS)


def decide(fact: BalanceFact, thresholds: tuple[int, ...], arms: dict[int, Arm]) -> list[Alert]:
    """The alerts this balance change crosses; updates `arms` (threshold -> Arm) in place."""
    decided = []
    for threshold in thresholds:
        arm = arms.setdefault(threshold, Arm())
        now_above = reached(fact.credits_used, fact.package.credits_limit, threshold)
        if now_above and not arm.above:
            arm.crossings += 1
            identifier = alert_id(fact.account_id, fact.package.valid_from, threshold, arm.crossings)
            decided.append(Alert(
                identifier, fact.account_id, QUOTA_KIND, fact.occurred_at, fact.event_id,
                _body(fact, identifier, threshold, arm.crossings), package_valid_from=fact.package.valid_from,
                threshold=threshold, crossing=arm.crossings, credits_used=fact.credits_used,
                credits_limit=fact.package.credits_limit))
        arm.above = now_above
    return decided


def policy_alert(fact: PolicyEvent) -> Alert | None:
    """The alert a usage-policy fact raises (None for a reinstatement)."""
    if fact.type not in POLICY_ALERT_KINDS:
        return None
    identifier = f"alert:policy:{fact.event_id}"
    body = orjson.dumps({
        "type": "policy.alert", "alert_id": identifier, "kind": fact.type, "account_id": fact.account_id,
        "key_id": fact.key_id, "occurred_at": format_instant(fact.occurred_at), "fact_event_id": fact.event_id,
        "violations": fact.violations, "window_s": fact.window_s, "rules": fact.rules,
        "request_event_ids": fact.request_event_ids, "message": fact.message,
    }, option=orjson.OPT_SORT_KEYS)
    return Alert(identifier, fact.account_id, fact.type, fact.occurred_at, fact.event_id, body, key_id=fact.key_id)


def unpublished(connection: Connection, limit: int = REPUBLISH_BATCH_MAX) -> list[tuple[str, str, bytes]]:
    """(alert_id, account_id, body) of alerts decided but not acknowledged by Kafka, oldest first."""
    query = (select(alerts.c.alert_id, alerts.c.account_id, alerts.c.body)
             .where(alerts.c.published_at.is_(None)).order_by(alerts.c.at, alerts.c.alert_id).limit(limit))
    return [(row.alert_id, row.account_id, row.body.encode()) for row in connection.execute(query)]


def mark_published(engine: Engine, alert_ids: list[str], at: datetime | None = None) -> None:
    """Record that Kafka acknowledged these alerts (a transaction of its own, after the fold's)."""
    if not alert_ids:
        return
    with engine.begin() as connection:
        connection.execute(update(alerts).where(alerts.c.alert_id.in_(alert_ids))
                           .values(published_at=at or datetime.now(timezone.utc)))
