"""Reads of the projection tables (SQLAlchemy Core): the same statements on SQLite and PostgreSQL.

Sums are done by the database per hour (the tables' grain); day buckets are folded from
hours in Python, because truncating an instant to a day is spelled differently by every
database and a month of hours is at most 744 rows per model.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, desc, exists, func, literal, or_, select, union_all

from projections.tables import (alerts, balance_timeline, dead_letter_reasons, fleet_usage_hourly, package_history,
                                policy_events, policy_key_state, policy_violations_hourly, policy_violations_recent,
                                projector_offsets, quota_events, quota_status, usage_hourly, webhook_deliveries)

__all__ = ["UsageRow", "MEASURES", "account_exists", "status", "latest_balance", "usage",
           "totals", "recent_charges", "recent_alerts", "quota_history", "packages", "statuses",
           "recent_exhausted", "dead_letters_by_reason", "webhook_failures", "offsets", "fleet_usage",
           "day_start", "policy_keys", "policy_facts", "violations_by_rule", "recent_violations", "suspended_keys"]

#: The additive measures of usage_hourly, in the API's order.
MEASURES = ("requests", "input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens", "credits",
            "credits_offpeak", "credits_saved")
_DECIMALS = ("credits", "credits_offpeak", "credits_saved")


@dataclass(frozen=True)
class UsageRow:
    """One bucket of one model (free models are rows with 0 credits)."""

    bucket_start: datetime
    model: str
    requests: int
    input_cache_hit_tokens: int
    input_cache_miss_tokens: int
    output_tokens: int
    credits: Decimal
    credits_offpeak: Decimal
    credits_saved: Decimal

    def fields(self) -> dict:
        """A shallow dict (dataclasses.asdict deep-copies: two thirds of a month's API time)."""
        return {"bucket_start": self.bucket_start, "model": self.model,
                **{name: getattr(self, name) for name in MEASURES}}


def day_start(instant: datetime) -> datetime:
    """The UTC day an instant falls in."""
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


def account_exists(connection: Connection, account_id: str) -> bool:
    """Known to the projections: a status, a package, any usage or policy fact (else the API says 404)."""
    probes = [select(literal(1)).where(table.c.account_id == account_id)
              for table in (quota_status, package_history, usage_hourly, policy_events)]
    return bool(connection.execute(select(exists(union_all(*probes).subquery().select()))).scalar())


def status(connection: Connection, account_id: str) -> dict | None:
    """The latest quota-status record (what the worker's lookup said when it was published)."""
    row = connection.execute(select(quota_status).where(quota_status.c.account_id == account_id)).mappings().first()
    return dict(row) if row else None


def latest_balance(connection: Connection, account_id: str, valid_from: datetime | None = None) -> dict | None:
    """The balance after the account's last balance.changed (of one package period if given).

    Every charge and package change publishes one, while quota-status is only published at
    credit steps: so this is the figure that equals the lookup after every charge. One
    account's facts share a partition, so the offset orders them."""
    table = balance_timeline.c
    query = select(balance_timeline).where(table.account_id == account_id)
    if valid_from is not None:
        query = query.where(table.package_valid_from == valid_from)
    row = connection.execute(query.order_by(desc(table.fact_offset)).limit(1)).mappings().first()
    return dict(row) if row else None


def _hour_rows(connection: Connection, account_id: str, start: datetime, end: datetime) -> list[UsageRow]:
    table = usage_hourly.c
    query = (select(table.hour_start, table.model, *(table[name] for name in MEASURES))
             .where(table.account_id == account_id, table.hour_start >= start, table.hour_start < end)
             .order_by(table.hour_start, table.model))
    return [UsageRow(*row) for row in connection.execute(query)]


def usage(connection: Connection, account_id: str, start: datetime, end: datetime, bucket: str) -> list[UsageRow]:
    """Usage per bucket ('hour' or 'day') and model, hours in [start, end), ordered by bucket then model."""
    hours = _hour_rows(connection, account_id, start, end)
    if bucket == "hour":
        return hours
    days: dict[tuple[datetime, str], list] = {}
    for row in hours:  # plain lists: dataclasses.replace per hour cost more than the query
        key = (day_start(row.bucket_start), row.model)
        sums = days.get(key)
        if sums is None:
            days[key] = [getattr(row, name) for name in MEASURES]
        else:
            for index, name in enumerate(MEASURES):
                sums[index] += getattr(row, name)
    return [UsageRow(day, model, *days[(day, model)]) for day, model in sorted(days)]


def totals(connection: Connection, account_id: str, start: datetime | None = None,
           end: datetime | None = None) -> dict[str, dict]:
    """model -> summed measures over [start, end) (all time when not given)."""
    table = usage_hourly.c
    query = (select(table.model, *(func.sum(table[name]).label(name) for name in MEASURES))
             .where(table.account_id == account_id).group_by(table.model).order_by(table.model))
    if start is not None:
        query = query.where(table.hour_start >= start)
    if end is not None:
        query = query.where(table.hour_start < end)
    result: dict[str, dict] = {}
    for row in connection.execute(query).mappings():
        result[row["model"]] = {name: _zero(row[name], name) for name in MEASURES}
    return result


def _zero(value, name: str):
    if value is None:
        return Decimal(0) if name in _DECIMALS else 0
    return Decimal(value) if name in _DECIMALS else int(value)


def recent_charges(connection: Connection, account_id: str, limit: int = 15) -> list[dict]:
    """The latest balance changes (charges and package changes), by when they happened, newest first."""
    table = balance_timeline.c
    query = (select(balance_timeline).where(table.account_id == account_id)
             .order_by(desc(table.at), desc(table.fact_offset)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def recent_alerts(connection: Connection, account_id: str, limit: int = 15) -> list[dict]:
    """Threshold and usage-policy alerts, newest first."""
    table = alerts.c
    query = (select(table.alert_id, table.kind, table.at, table.key_id, table.package_valid_from, table.threshold,
                    table.crossing, table.credits_used, table.credits_limit, table.published_at)
             .where(table.account_id == account_id)
             .order_by(desc(table.at), desc(table.threshold), desc(table.alert_id)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def quota_history(connection: Connection, account_id: str, limit: int = 15) -> list[dict]:
    """Exhaustions and restorations, newest first."""
    table = quota_events.c
    query = (select(quota_events).where(table.account_id == account_id)
             .order_by(desc(table.at), desc(table.event_id)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def packages(connection: Connection, account_id: str) -> list[dict]:
    """Package periods with what was paid (the invoice lines), newest first."""
    table = package_history.c
    query = select(package_history).where(table.account_id == account_id).order_by(desc(table.valid_from))
    return [dict(row) for row in connection.execute(query).mappings()]


def statuses(connection: Connection) -> dict[str, int]:
    """status -> accounts (from the latest quota-status of each)."""
    table = quota_status.c
    query = select(table.status, func.count()).group_by(table.status).order_by(table.status)
    return {name: int(count) for name, count in connection.execute(query)}


def recent_exhausted(connection: Connection, limit: int = 10) -> list[dict]:
    """The latest quota.exhausted facts, newest first."""
    table = quota_events.c
    query = (select(table.account_id, table.at, table.tier, table.credits_used, table.credits_limit,
                    table.cause_type, table.package_valid_from)
             .where(table.type == "quota.exhausted").order_by(desc(table.at), desc(table.event_id)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def dead_letters_by_reason(connection: Connection) -> list[dict]:
    table = dead_letter_reasons.c
    query = (select(table.reason, table.count, table.latest_at, table.latest_event_id, table.latest_account_id,
                    table.latest_detail).order_by(desc(table.count), table.reason))
    return [dict(row) for row in connection.execute(query).mappings()]


def webhook_failures(connection: Connection, limit: int = 20) -> list[dict]:
    """Deliveries given up, and pending ones whose last attempt failed, newest attempt first."""
    table = webhook_deliveries.c
    failing = or_(table.status == "failed", (table.status == "pending") & (table.attempts > 0))
    query = (select(table.alert_id, table.url, table.status, table.attempts, table.last_status_code,
                    table.last_error, table.last_attempt_at, table.next_attempt_at)
             .where(failing).order_by(desc(table.last_attempt_at)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def webhook_counts(connection: Connection) -> dict[str, int]:
    table = webhook_deliveries.c
    return {name: int(count) for name, count in
            connection.execute(select(table.status, func.count()).group_by(table.status))}


def offsets(connection: Connection) -> dict[str, dict[int, int]]:
    """topic -> partition -> next offset the projector folds (stored with its rows)."""
    result: dict[str, dict[int, int]] = defaultdict(dict)
    for row in connection.execute(select(projector_offsets)):
        result[row.topic][row.partition] = row.next_offset
    return dict(result)


def fleet_usage(connection: Connection, start: datetime, end: datetime) -> list[dict]:
    """Per cluster x protocol over [start, end): the summed measures, biggest credits first."""
    table = fleet_usage_hourly.c
    query = (select(table.cluster, table.protocol, *(func.sum(table[name]).label(name) for name in MEASURES))
             .where(table.hour_start >= start, table.hour_start < end)
             .group_by(table.cluster, table.protocol).order_by(table.cluster, table.protocol))
    rows = [{"cluster": row["cluster"], "protocol": row["protocol"],
             **{name: _zero(row[name], name) for name in MEASURES}} for row in connection.execute(query).mappings()]
    return sorted(rows, key=lambda row: -row["credits"])


def window(end: datetime, hours: int) -> tuple[datetime, datetime]:
    """[end - hours, end)."""
    return end - timedelta(hours=hours), end


# -- usage policy ------------------------------------------------------------------------------

def policy_keys(connection: Connection, account_id: str) -> dict[str, dict | None]:
    """key_id -> its policy_key_state row (None: never suspended, so active), for every key of the
    account with a policy fact or a violation."""
    keys: dict[str, dict | None] = {}
    for table in (policy_events, policy_violations_hourly):
        query = select(table.c.key_id).where(table.c.account_id == account_id).distinct()
        keys.update({key: None for key in connection.execute(query).scalars()})
    state = policy_key_state.c
    for row in connection.execute(select(policy_key_state).where(state.account_id == account_id)).mappings():
        keys[row["key_id"]] = dict(row)
    return dict(sorted(keys.items()))


def policy_facts(connection: Connection, account_id: str, limit: int = 50) -> list[dict]:
    """Warnings, suspensions, reinstatements of the account's keys, newest first (by record position)."""
    table = policy_events.c
    query = (select(policy_events).where(table.account_id == account_id)
             .order_by(desc(table.fact_partition), desc(table.fact_offset)).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def violations_by_rule(connection: Connection, account_id: str, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """key_id -> rule -> policy.violation count over the hours in [start, end)."""
    table = policy_violations_hourly.c
    query = (select(table.key_id, table.rule, func.sum(table.count))
             .where(table.account_id == account_id, table.hour_start >= start, table.hour_start < end)
             .group_by(table.key_id, table.rule).order_by(table.key_id, table.rule))
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for key_id, rule, count in connection.execute(query):
        result[key_id][rule] = int(count)
    return dict(result)


def recent_violations(connection: Connection, account_id: str) -> dict[str, list[dict]]:
    """key_id -> its latest violations kept by the projector, newest first."""
    table = policy_violations_recent.c
    query = (select(table.key_id, table.at, table.request_event_id, table.rule, table.rules_version, table.tool,
                    table.client, table.event_id)
             .where(table.account_id == account_id)
             .order_by(table.key_id, desc(table.at), desc(table.fact_partition), desc(table.fact_offset),
                       desc(table.event_id)))
    result: dict[str, list[dict]] = defaultdict(list)
    for row in connection.execute(query).mappings():
        result[row["key_id"]].append({name: row[name] for name in row.keys() if name != "key_id"})
    return dict(result)


def suspended_keys(connection: Connection, limit: int = 20) -> list[dict]:
    """Keys whose latest policy fact suspended them, most recently suspended first."""
    table = policy_key_state.c
    query = (select(table.key_id, table.account_id, table.changed_at, table.event_id, table.message)
             .where(table.status == "suspended").order_by(desc(table.changed_at), table.key_id).limit(limit))
    return [dict(row) for row in connection.execute(query).mappings()]


def suspended_count(connection: Connection) -> int:
    table = policy_key_state.c
    return int(connection.execute(select(func.count()).where(table.status == "suspended")).scalar() or 0)
