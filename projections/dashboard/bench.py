"""The dashboard API's latency for an account with a month of hourly data (issue 13 part 6), in process.

`measure()` fills a fresh SQLite file (or the database at `url`) with one account's month:
every hour x model in usage_hourly, one balance change per charge, its package and its
status, then times sequential GETs through the real app and a real HTTP connection
(aiohttp's test server on a local port). The bench calls `api_latency()`; run alone:
`python -m projections.dashboard.bench [--hours 720] [--requests 200]`.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import Engine

from projections.dashboard.app import Dashboard, build_app
from projections.facts import is_offpeak
from projections.store import create_schema, open_engine
from projections.tables import balance_timeline, package_history, quota_status, usage_hourly

__all__ = ["measure", "api_latency", "fill_month", "ACCOUNT", "MODELS"]

ACCOUNT = "bench-month"
MODELS = ("mimo-v2.5-pro", "mimo-v2.5", "MiMo-V2.5-TTS")
LIMIT = Decimal(4_100_000_000)
#: "Now" of the measurement: the end of the filled month (fixed, so runs compare).
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _charge(model: str, hour: datetime) -> Decimal:
    if model == "MiMo-V2.5-TTS":
        return Decimal(0)  # free
    base = Decimal(120_000) if model == "mimo-v2.5-pro" else Decimal(40_000)
    return base * Decimal("0.8") if is_offpeak(hour) else base


def _usage_rows(start: datetime, hours: int) -> list[dict]:
    rows = []
    for index in range(hours):
        hour = start + timedelta(hours=index)
        for model in MODELS:
            credits = _charge(model, hour)
            offpeak = credits if is_offpeak(hour) else Decimal(0)
            rows.append({"account_id": ACCOUNT, "model": model, "hour_start": hour, "requests": 10,
                         "input_cache_hit_tokens": 5000, "input_cache_miss_tokens": 20_000, "output_tokens": 1500,
                         "credits": credits, "credits_offpeak": offpeak, "credits_saved": offpeak / 4})
    return rows


def _timeline_rows(usage: list[dict], start: datetime) -> list[dict]:
    rows, used = [], Decimal(0)
    for offset, row in enumerate(usage):
        used += row["credits"]
        rows.append({"event_id": f"bench-{offset}", "account_id": ACCOUNT, "package_valid_from": start,
                     "at": row["hour_start"] + timedelta(minutes=30), "cause_type": "usage",
                     "cause_event_id": f"bench-use-{offset}", "credits_charged": row["credits"], "credits_used": used,
                     "credits_remaining": max(LIMIT - used, Decimal(0)), "credits_limit": LIMIT,
                     "fact_partition": 0, "fact_offset": offset})
    return rows


def fill_month(engine: Engine, hours: int = 720) -> dict:
    """One account's `hours` of usage on every model, ending at NOW; returns the row counts."""
    start = NOW - timedelta(hours=hours)
    usage = _usage_rows(start, hours)
    timeline = _timeline_rows(usage, start)
    used = timeline[-1]["credits_used"] if timeline else Decimal(0)
    package = {"account_id": ACCOUNT, "valid_from": start, "valid_until": start + timedelta(days=31), "tier": "max",
               "period": "monthly", "credits_limit": LIMIT, "credits_used": used,
               "credits_remaining": max(LIMIT - used, Decimal(0)), "exhausted": False, "opened_by": "plan.purchased",
               "opened_event_id": "bench-buy", "paid_at": start, "amount": Decimal("140"), "currency": "USD",
               "discount": None}
    status = {"account_id": ACCOUNT, "status": "active", "allowed": True, "tier": "max", "period": "monthly",
              "credits_limit": LIMIT, "credits_used": used, "credits_remaining": package["credits_remaining"],
              "valid_from": start, "valid_until": package["valid_until"], "computed_at": NOW, "event_time": NOW,
              "status_partition": 0, "status_offset": 0}
    create_schema(engine)
    with engine.begin() as connection:
        connection.execute(usage_hourly.insert(), usage)
        connection.execute(balance_timeline.insert(), timeline)
        connection.execute(package_history.insert(), [package])
        connection.execute(quota_status.insert(), [status])
    return {"usage_hourly": len(usage), "balance_timeline": len(timeline)}


def _paths(hours: int) -> dict[str, str]:
    start = (NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    end = NOW.isoformat().replace("+00:00", "Z")
    return {"usage_month_hourly": f"/api/accounts/{ACCOUNT}/usage?from={start}&to={end}&bucket=hour",
            "usage_month_daily": f"/api/accounts/{ACCOUNT}/usage?from={start}&to={end}&bucket=day",
            "forecast": f"/api/accounts/{ACCOUNT}/forecast",
            "account": f"/api/accounts/{ACCOUNT}",
            "account_page_daily": f"/accounts/{ACCOUNT}?bucket=day"}


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _time(session: ClientSession, base: str, path: str, requests: int) -> dict:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        async with session.get(base + path) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
        samples.append((time.perf_counter() - started) * 1000)
    return {"requests": requests, "p50_ms": round(_percentile(samples, 0.5), 2),
            "p99_ms": round(_percentile(samples, 0.99), 2), "max_ms": round(max(samples), 2)}


async def measure(url: str | None = None, hours: int = 720, requests: int = 200, warmup: int = 5) -> dict:
    """Per endpoint: p50/p99/max over `requests` sequential GETs (after `warmup`), and what was filled."""
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as folder:
        engine = open_engine(url or f"sqlite:///{Path(folder) / 'projections.db'}")
        try:
            rows = fill_month(engine, hours)
            server = TestServer(build_app(Dashboard(engine, now=lambda: NOW), sampler=False))
            await server.start_server()
            try:
                base = str(server.make_url(""))
                async with ClientSession() as session:
                    results = {}
                    for name, path in _paths(hours).items():
                        await _time(session, base, path, warmup)
                        results[name] = await _time(session, base, path, requests)
            finally:
                await server.close()
        finally:
            engine.dispose()
    api = [results[name]["p99_ms"] for name in ("usage_month_hourly", "usage_month_daily", "forecast", "account")]
    return {"database": "sqlite (temporary file)" if url is None else "given", "hours": hours, "models": len(MODELS),
            "rows": rows, "endpoints": results, "api_p99_ms": max(api)}


def api_latency(url: str | None = None, hours: int = 720, requests: int = 200) -> dict:
    """Blocking wrapper for the bench (runs its own event loop)."""
    return asyncio.run(measure(url, hours, requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL to fill (default: a temporary SQLite file)")
    parser.add_argument("--hours", type=int, default=720)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(orjson.dumps(api_latency(args.url, args.hours, args.requests), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
