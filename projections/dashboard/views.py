"""The figures of each page, read once and shared by the HTML and the JSON API.

Both render the same dicts (Python values here; `jsonable` turns them into the API's
strings), so a number on the page is the number the API returns by construction.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection

from projections.dashboard import queries
from projections.dashboard.formatting import decimal_text, instant_text
from projections.facts import hour_start
from projections.queries import account_forecast
from schemas.events import parse_instant

__all__ = ["BadRequest", "UsageQuery", "parse_usage_query", "usage_rows", "account_view", "forecast_view",
           "jsonable", "FORECAST_RULE", "BUCKETS", "policy_view", "POLICY_WINDOW", "REQUESTS_SHOWN"]

BUCKETS = ("hour", "day")
#: Default spans of the usage API and the chart: two days of hours, a month of days.
DEFAULT_SPAN = {"hour": timedelta(hours=48), "day": timedelta(days=30)}
#: Longest span one request may ask for (a year of hours per model is ~8 800 rows).
MAX_SPAN = timedelta(days=400)
#: Digits kept for derived figures (a pace per hour): the ledger's unit, the micro-credit.
MICRO = Decimal("0.000001")
FORECAST_RULE = ("pace = peak-equivalent credits per hour over the window (off-peak credits / 0.8, since the "
                 "same work costs 0.8x in UTC 16:00-24:00); walking forward hour by hour at that pace "
                 "(0.8x of it off-peak) until the remaining credits reach zero, or the package ends first")


class BadRequest(ValueError):
    """A query parameter the API cannot use: answered 400 with this message."""


@dataclass(frozen=True)
class UsageQuery:
    start: datetime
    end: datetime
    bucket: str


def _instant_param(query: Mapping[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise BadRequest(f"{name}={text!r}: {error}") from None


def parse_usage_query(query: Mapping[str, str], now: datetime) -> UsageQuery:
    """from/to (RFC 3339, from inclusive, to exclusive, on hour starts) and bucket (hour|day)."""
    bucket = query.get("bucket") or "hour"
    if bucket not in BUCKETS:
        raise BadRequest(f"bucket={bucket!r}: must be one of {', '.join(BUCKETS)}")
    end = _instant_param(query, "to") or hour_start(now) + timedelta(hours=1)
    start = _instant_param(query, "from") or _span_start(end, bucket)
    if start >= end:
        raise BadRequest(f"from ({instant_text(start)}) must be before to ({instant_text(end)})")
    if end - start > MAX_SPAN:
        raise BadRequest(f"from..to spans {(end - start).days} days; at most {MAX_SPAN.days} per request")
    return UsageQuery(start, end, bucket)


def _span_start(end: datetime, bucket: str) -> datetime:
    start = end - DEFAULT_SPAN[bucket]
    return queries.day_start(start) if bucket == "day" else start


def usage_rows(connection: Connection, account_id: str, query: UsageQuery) -> list[dict]:
    rows = queries.usage(connection, account_id, query.start, query.end, query.bucket)
    return [row.fields() for row in rows]


def usage_json(rows: list[dict]) -> list[dict]:
    """The API's rows (the same conversions as `jsonable`, unrolled: a month is thousands of rows)."""
    decimals = ("credits", "credits_offpeak", "credits_saved")  # canonical already (ExactDecimal): just spell
    return [{**row, "bucket_start": instant_text(row["bucket_start"]),
             **{name: format(row[name], "f") for name in decimals}} for row in rows]


def credits(connection: Connection, account_id: str, status: dict | None) -> dict | None:
    """Limit, used and remaining of the current package, and where the figures come from.

    While the package is live, the last balance.changed of that package (published after
    every charge: equal to the worker's lookup); otherwise the status record's own."""
    live = status is not None and status["status"] in ("active", "exhausted") and status["valid_from"] is not None
    balance = queries.latest_balance(connection, account_id, status["valid_from"] if live else None)
    if live and balance is not None:
        return {"credits_limit": balance["credits_limit"], "credits_used": balance["credits_used"],
                "credits_remaining": balance["credits_remaining"], "source": "balance-changed",
                "at": balance["at"], "event_id": balance["event_id"]}
    if status is not None and status["credits_limit"] is not None:
        return {"credits_limit": status["credits_limit"], "credits_used": status["credits_used"],
                "credits_remaining": status["credits_remaining"], "source": "quota-status",
                "at": status["computed_at"], "event_id": None}
    return None


def account_view(connection: Connection, account_id: str) -> dict | None:
    """Status, credits and the latest status record's as_of; None for an unknown account."""
    if not queries.account_exists(connection, account_id):
        return None
    status = queries.status(connection, account_id)
    return {"account_id": account_id, "status": None if status is None else _status_fields(status),
            "credits": credits(connection, account_id, status)}


def _status_fields(status: dict) -> dict:
    names = ("status", "allowed", "tier", "period", "valid_from", "valid_until", "credits_limit", "credits_used",
             "credits_remaining")
    return {**{name: status[name] for name in names},
            "as_of": {"computed_at": status["computed_at"], "event_time": status["event_time"]}}


def _pace_fields(pace) -> dict:
    """The pace's figures; the derived decimals (the first hour of a window counts in part)
    rounded to the micro-credit, the ledger's unit."""
    fields = asdict(pace)
    for name in ("covered_hours", "credits", "credits_offpeak", "peak_equivalent_credits", "peak_equivalent_per_hour"):
        fields[name] = getattr(pace, name).quantize(MICRO)
    return fields


def forecast_view(connection: Connection, account_id: str, now: datetime, view: dict | None = None) -> dict | None:
    """The run-out instant at the last 24 h's and 7 d's pace, with the figures behind it.

    The rule and the current package are the projector's (`projections.queries.account_forecast`),
    so the dashboard, the bench and the projector's tests forecast alike."""
    view = view or account_view(connection, account_id)
    if view is None:
        return None
    result = account_forecast(connection, account_id, now)
    if result is None:
        return {"account_id": account_id, "now": now, "package": None, "credits_remaining": None,
                "valid_from": None, "valid_until": None, "paces": [], "rule": FORECAST_RULE}
    return {"account_id": account_id, "now": result.now, "package": "current",
            "credits_remaining": result.credits_remaining, "valid_from": result.valid_from,
            "valid_until": result.valid_until, "paces": [_pace_fields(pace) for pace in result.paces],
            "rule": FORECAST_RULE}


#: The violations-by-rule window of the usage-policy card and API.
POLICY_WINDOW = timedelta(hours=24)
#: Request event ids the page shows per fact (the API gives them all, with the count).
REQUESTS_SHOWN = 5


def _policy_fact(row: dict) -> dict:
    requests = orjson.loads(row["request_event_ids"])
    return {"event_id": row["event_id"], "type": row["type"], "at": row["at"], "cause_event_id": row["cause_event_id"],
            "violations": row["violations"], "window_s": row["window_s"], "rules": orjson.loads(row["rules"]),
            "requests": len(requests), "request_event_ids": requests, "message": row["message"]}


def policy_view(connection: Connection, account_id: str, now: datetime) -> dict | None:
    """Per key of the account: its state (from the latest key.suspended / key.reinstated), the
    last 24 h's violations by rule, its facts with the requests that triggered them, and its
    latest violations. None for an unknown account."""
    if not queries.account_exists(connection, account_id):
        return None
    end = hour_start(now) + timedelta(hours=1)
    start = end - POLICY_WINDOW
    by_rule = queries.violations_by_rule(connection, account_id, start, end)
    recent = queries.recent_violations(connection, account_id)
    facts: dict[str, list[dict]] = {}
    for row in queries.policy_facts(connection, account_id, limit=500):
        facts.setdefault(row["key_id"], []).append(_policy_fact(row))
    keys = []
    for key_id, state in queries.policy_keys(connection, account_id).items():
        rules = by_rule.get(key_id, {})
        keys.append({"key_id": key_id, "status": "active" if state is None else state["status"],
                     "changed_at": None if state is None else state["changed_at"],
                     "changed_by": None if state is None else state["event_id"],
                     "reason": None if state is None else state["message"],
                     "violations_24h": sum(rules.values()), "violations_by_rule_24h": rules,
                     "facts": facts.get(key_id, []), "recent_violations": recent.get(key_id, [])})
    keys.sort(key=lambda key: (key["status"] != "suspended", key["key_id"]))
    return {"account_id": account_id, "now": now, "from": start, "to": end,
            "suspended": sum(1 for key in keys if key["status"] == "suspended"), "keys": keys}


def jsonable(value: Any) -> Any:
    """Decimals as strings, instants as RFC 3339 'Z', recursively (the API's only conversions)."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return instant_text(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}  # column names may be str subclasses
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def fleet_view(connection: Connection, now: datetime) -> dict:
    """The operator's tables: statuses, exhaustions, dead letters, webhooks, the last 24 h per cluster."""
    end = hour_start(now) + timedelta(hours=1)
    return {"now": now, "accounts_by_status": queries.statuses(connection),
            "recently_exhausted": queries.recent_exhausted(connection),
            "dead_letters_by_reason": queries.dead_letters_by_reason(connection),
            "webhook_failures": queries.webhook_failures(connection),
            "webhook_deliveries": queries.webhook_counts(connection),
            "usage_24h": queries.fleet_usage(connection, end - timedelta(hours=24), end),
            "suspended_keys": queries.suspended_keys(connection),
            "suspended_keys_total": queries.suspended_count(connection)}


def topic_rows(topics: list[str], folded: dict[str, dict[int, int]], highwaters: dict[str, dict[int, int]] | None,
               rates: dict[str, float | None]) -> list[dict]:
    """Per topic: offsets folded, Kafka's high-water mark, lag (None when Kafka was not read), records/s."""
    rows = []
    for topic in topics:
        stored = folded.get(topic, {})
        ends = None if highwaters is None else highwaters.get(topic)
        lag = None if ends is None else sum(max(end - stored.get(p, 0), 0) for p, end in ends.items())
        rows.append({"topic": topic, "folded": sum(stored.values()), "partitions": len(ends or stored),
                     "highwater": None if ends is None else sum(ends.values()), "lag": lag,
                     "records_per_s": rates.get(topic)})
    return rows
