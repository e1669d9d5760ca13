"""`tokenplan bench`'s projections section: how fast the projector folds, how far a row
trails its fact, and how fast the dashboard's API answers.

One report entry (`report["projections"]`), on a real worker on the real broker in a fresh
Namespace (deploy/localrun): `accounts` max-plan accounts buy, then `events` usage events
(bench.workload, the pipeline's generator: retries included) are applied by the worker.
1. throughput: a `Projector` (in this process, its default batch size) folds the whole
   backlog of the four fact topics into a fresh SQLite file, and into a fresh database
   on `deploy/local-postgres` when that starts (skipped with the reason otherwise).
   Records folded per second from the first fetch returning records (not the group
   join before it) to the last commit, and the fold alone (records / the sum of
   `tokenplan_projector_batch_seconds`: without the fetches between batches). Compared with the
   pipeline section's events/s when it ran in the same run; otherwise reported alone.
2. lag: the projector stays live (defaults: 2,000-record batches, 500 ms polls) while
   usage is produced at a steady `rate` for `seconds`; for every fact of that phase,
   the commit instant of the batch that folded it minus its Kafka record timestamp
   (CreateTime: when the worker produced it), from the projector's commit hook.
   p50/p99/max. The live projector's /metrics is scraped at the end.
3. dashboard: one account's month of hourly usage (`dashboard_days` x 24 hours x the
   models) in SQLite, served by `projections.dashboard.app.build_app` on a local port;
   `dashboard_requests` sequential requests each of `GET /api/accounts/{id}/usage?bucket=hour`
   over the whole month and of `GET /api/accounts/{id}/forecast`, timed by an aiohttp
   client in this process (client time included). p50/p99/max. The dashboard's own
   measure (`projections.dashboard.bench.measure`, which also times the daily usage, the
   account and the account page) is used when present; `dashboard_latency` here (the
   rows folded by the projector's Fold) otherwise.
Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from bench.workload import generate, stamp
from deploy.localrun import DEPLOY, Namespace, WorkerProcess

__all__ = ["ProjectionsBenchSizes", "dashboard_latency", "month_of_usage", "projections_section"]

#: The account of the dashboard measure and its models (catalog names; the costs are made up).
DASHBOARD_ACCOUNT = "bench-dashboard"
DASHBOARD_MODELS = ("MiMo-V2.5-Pro", "mimo-v2.5", "mimo-v2-omni", "MiMo-V2.5-TTS")
#: Marks a usage-caused balance.changed in its JSON (how the pipeline section counts them).
USAGE_MARKER = b'"cause_type":"usage"'
#: How long the live projector may take to fold the lag phase's last facts after the load.
LAG_DRAIN_S = 60.0
#: deploy/local-postgres start: apt-get install on a cold machine takes a while.
POSTGRES_START_TIMEOUT_S = 240
#: Requests sent to each endpoint before timing (connection, caches, SQLite pages).
DASHBOARD_WARMUP = 10


@dataclass
class ProjectionsBenchSizes:
    """The section's sizes (BenchConfig's projections_* fields; `--smoke` shrinks them)."""

    accounts: int = 1_000
    events: int = 20_000
    rate: int = 500
    seconds: float = 10.0
    dashboard_days: int = 30
    dashboard_models: int = 4
    dashboard_requests: int = 500
    #: Also fold into PostgreSQL when deploy/local-postgres starts.
    postgres: bool = True


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


def summary_ms(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"count": len(values_ms), "p50_ms": round(percentile(values_ms, 0.5), 2),
            "p99_ms": round(percentile(values_ms, 0.99), 2), "max_ms": round(max(values_ms), 2)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the projector, in this process

def projector_settings(bootstrap: str, ns: Namespace, url: str, group_suffix: str, metrics_port: int = 0):
    """The projector's defaults (batch size, poll), in the namespace, its own group per database."""
    from projections.settings import ProjectorSettings

    return ProjectorSettings(bootstrap=bootstrap, app_id=ns.app_id, topic_prefix=ns.topic_prefix,
                             projections_url=url, group=f"{ns.app_id}-projector-{group_suffix}",
                             progress_s=3600.0, metrics_port=metrics_port)


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> log end offset, for the partitions of `topics` that exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in (consumer.partitions_for_topic(topic) or ())]
        if len(partitions) < len(topics):
            await consumer._client.force_metadata_update()  # noqa: SLF001 (topics created since the client started)
            partitions = [TopicPartition(topic, p) for topic in topics
                          for p in (consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


def caught_up(projector, ends: dict[tuple[str, int], int]) -> bool:
    return all(projector.next_offsets.get(key, 0) >= end for key, end in ends.items() if end > 0)


async def fold_backlog(bootstrap: str, ns: Namespace, url: str, label: str, timeout_s: float) -> dict:
    """A fresh projector folds every record the fact topics hold now into `url`; its rate."""
    from projections.projector import SOURCE_TOPICS, Projector

    ends = await end_offsets(bootstrap, [ns.topic(name) for name in SOURCE_TOPICS])
    projector = Projector(projector_settings(bootstrap, ns, url, label), out=io.StringIO())
    commits: list[tuple[float, int]] = []
    first_batch_s: list[float] = []

    def on_commit(records, at: float) -> None:
        if not commits:  # the first batch's own time (fetch returned -> commit): where the fold began
            first_batch_s.append(projector.metrics.registry.get_sample_value("tokenplan_projector_batch_seconds_sum"))
        commits.append((at, len(records)))
    projector.on_commit = on_commit
    stop = asyncio.Event()
    began = time.monotonic()
    task = asyncio.create_task(projector.run(stop))
    try:
        while not caught_up(projector, ends) and not task.done() and time.monotonic() - began < timeout_s:
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
    finally:
        stop.set()
        await task
        projector.engine.dispose()
    records = sum(count for _at, count in commits)
    # From the first batch's fetch returning (its commit minus its batch time) to the last commit.
    seconds = commits[-1][0] - (commits[0][0] - first_batch_s[0]) if commits else 0.0
    fold_seconds = projector.metrics.registry.get_sample_value("tokenplan_projector_batch_seconds_sum") or 0.0
    folded = dict(projector.totals.folded)
    return {"database": label, "records": records, "expected": sum(ends.values()), "complete": caught_up(projector, ends),
            "batches": len(commits), "batch_max": projector.settings.batch_max, "by_topic": folded,
            "duplicates": projector.totals.duplicates, "seconds": round(seconds, 3),
            "events_per_s": round(records / seconds, 1) if seconds > 0 else None,
            "fold_seconds": round(fold_seconds, 3),
            "fold_events_per_s": round(records / fold_seconds, 1) if fold_seconds > 0 else None}


# ---------------------------------------------------------------- PostgreSQL, when it starts

class LocalPostgres:
    """deploy/local-postgres for the length of the section (its own state file)."""

    def __init__(self, work_dir: Path) -> None:
        self.env = dict(os.environ, TOKENPLAN_PG_STATE=str(work_dir / "local-postgres.json"))
        self.url: str | None = None
        self.error: str | None = None

    def start(self) -> str | None:
        try:
            started = subprocess.run([str(DEPLOY / "local-postgres"), "start"], env=self.env, capture_output=True,
                                     text=True, timeout=POSTGRES_START_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            self.error = f"deploy/local-postgres start: {error}"
            return None
        if started.returncode != 0:
            self.error = f"deploy/local-postgres start: {started.stderr.strip()[-300:]}"
            return None
        self.url = started.stdout.strip().splitlines()[-1]
        return self.url

    def fresh_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        from projections.store import engine_url

        assert self.url is not None
        admin = create_engine(engine_url(self.url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        if self.url is not None:
            subprocess.run([str(DEPLOY / "local-postgres"), "stop"], env=self.env, capture_output=True, check=False)


# ---------------------------------------------------------------- 2. fact -> row lag, live

async def live_lag(bootstrap: str, ns: Namespace, url: str, sizes: ProjectionsBenchSizes, log) -> dict:
    """The projector live on `url` (caught up) while LOAD_SCRIPT sends `rate` usage events/s."""
    import aiohttp

    from bench.gateway import parse_histogram
    from bench.pipeline import LOAD_SCRIPT, recent_day
    from projections.projector import SOURCE_TOPICS, Projector

    port = free_port()
    projector = Projector(projector_settings(bootstrap, ns, url, "sqlite", metrics_port=port),
                          out=io.StringIO())
    lags: list[float] = []
    usage_lags: list[float] = []
    batch_records: list[int] = []
    phase = {"start_ms": float("inf")}

    def on_commit(records, committed_at: float) -> None:  # once per batch
        at_ms = committed_at * 1000
        counted = 0
        for record in records:
            if record.timestamp_ms >= phase["start_ms"]:
                counted += 1
                lags.append(at_ms - record.timestamp_ms)
                if record.kind == "balance-changed" and USAGE_MARKER in (record.value or b""):
                    usage_lags.append(at_ms - record.timestamp_ms)
        if counted:
            batch_records.append(counted)
    projector.on_commit = on_commit
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        ends = await end_offsets(bootstrap, [ns.topic(name) for name in SOURCE_TOPICS])
        deadline = time.monotonic() + 60
        while not caught_up(projector, ends) and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        phase["start_ms"] = time.time() * 1000
        load_before = os.getloadavg()[0]
        # A subprocess the loop waits for without blocking: the projector runs in this loop meanwhile.
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOAD_SCRIPT, bootstrap, ns.topic("usage"), str(sizes.rate), str(sizes.seconds),
            "proj-", str(sizes.accounts), stamp(recent_day() + timedelta(hours=2)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(load.communicate(), timeout=sizes.seconds + 60)
        if load.returncode != 0:
            raise RuntimeError(f"projections: the load exited with {load.returncode}: {stderr.decode()[-500:]}")
        sent = int(stdout.split()[-1])
        deadline = time.monotonic() + LAG_DRAIN_S
        while len(usage_lags) < sent and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if task.done():
            task.result()
        scraped = None
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics",
                                       timeout=aiohttp.ClientTimeout(total=5)) as response:
                    scraped = metrics_summary(await response.text(), parse_histogram)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log(f"projections: projector /metrics not scraped: {error}")
    finally:
        stop.set()
        await task
        projector.engine.dispose()
    return {"rate_target": sizes.rate, "seconds": sizes.seconds, "usage_events_sent": sent,
            "usage_facts_folded": len(usage_lags), "complete": len(usage_lags) >= sent,
            "batch_max": projector.settings.batch_max, "poll_ms": projector.settings.poll_ms,
            "batches": len(batch_records), "batch_records_max": max(batch_records, default=0),
            # The machine's 1-minute load average at the start and end of the load (2 cores: above
            # 2 the processes wait for a core, and the lag shows it).
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "all_facts": summary_ms(lags), "usage_facts": summary_ms(usage_lags), "metrics": scraped}


def metrics_summary(text: str, parse_histogram) -> dict:
    """The live projector's /metrics, summed: what it counted over the lag phase (and before, same process)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("tokenplan_projector_facts_applied_total", "tokenplan_projector_batches_total",
                               "tokenplan_projector_duplicates_total", "tokenplan_projector_lag",
                               "tokenplan_projector_alerts_total", "tokenplan_projector_webhook_failures_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    batch = parse_histogram(text, "tokenplan_projector_batch_seconds")
    return {"facts_applied": int(totals.get("tokenplan_projector_facts_applied_total", 0)),
            "batches": int(totals.get("tokenplan_projector_batches_total", 0)),
            "duplicates": int(totals.get("tokenplan_projector_duplicates_total", 0)),
            "alerts": int(totals.get("tokenplan_projector_alerts_total", 0)),
            "webhook_failures": int(totals.get("tokenplan_projector_webhook_failures_total", 0)),
            "lag_at_end": int(totals.get("tokenplan_projector_lag", 0)),
            "batch_seconds": {"count": batch["count"], "mean_ms": round(batch["mean_us"] / 1000, 2)
                              if batch.get("mean_us") is not None else None,
                              "p50_le_ms": _ms_of_us(batch.get("p50_le_us")), "p99_le_ms": _ms_of_us(batch.get("p99_le_us"))}}


def _ms_of_us(value):
    return None if value is None else round(value / 1000, 3)


# ---------------------------------------------------------------- 3. the dashboard API

def month_of_usage(engine, now: datetime, days: int = 30, models: int = 4, account: str = DASHBOARD_ACCOUNT) -> dict:
    """Fold (the projector's Fold) a purchase and one usage fact per hour and model over `days` days.

    The package began `days` days before the current hour and lasts `days` + 1 days, so it is
    live now; off-peak hours (UTC 16:00-24:00) are charged at 0.8. Returns what was written.
    """
    from projections.facts import Record
    from projections.fold import Fold
    from projections.store import create_schema

    create_schema(engine)
    start = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
    limit = Decimal(82_000_000_000)
    pkg = {"tier": "max", "period": "monthly", "valid_from": stamp(start),
           "valid_until": stamp(start + timedelta(days=days + 1)), "credits_limit": str(limit)}
    names = DASHBOARD_MODELS[:models] if models <= len(DASHBOARD_MODELS) else \
        DASHBOARD_MODELS + tuple(f"model-{n}" for n in range(len(DASHBOARD_MODELS), models))

    def fact(event_id: str, at: datetime, used: Decimal, charged: Decimal, usage: dict | None, **extra) -> dict:
        body = {"type": "balance.changed", "event_id": event_id, "cause_event_id": f"cause-{event_id}",
                "cause_type": "usage" if usage else "plan.purchased", "account_id": account, "occurred_at": stamp(at),
                "package": pkg, "credits_charged": str(charged), "credits_used": str(used),
                "credits_remaining": str(limit - used), "amount": None, "currency": None, "discount": None, **extra}
        if usage is not None:
            body.update(usage=usage, schema_version=2)
        return body

    values = [fact("dash-buy", start, Decimal(0), Decimal(0), None, amount="50", currency="USD")]
    used = Decimal(0)
    for hour in range(days * 24):
        at = start + timedelta(hours=hour, minutes=30)
        offpeak = at.hour >= 16
        for index, model in enumerate(names):
            peak_cost = Decimal(1000 * (index + 1) + hour % 7 * 10)
            charged = peak_cost * Decimal("0.8") if offpeak else peak_cost
            used += charged
            usage = {"model": model, "input_cache_hit_tokens": 100, "input_cache_miss_tokens": 1000 + hour,
                     "output_tokens": 50 + index, "coefficient": "0.8" if offpeak else "1", "offpeak": offpeak,
                     "credits_saved": str(peak_cost - charged), "cluster": "sgp", "protocol": "openai",
                     "key_id": "key-dash"}
            values.append(fact(f"dash-{hour}-{index}", at, used, charged, usage))
    records = [Record("balance-changed", "tokenplan.balance-changed", 0, offset, int(time.time() * 1000),
                      orjson.dumps(value), account.encode()) for offset, value in enumerate(values)]
    with engine.begin() as connection:
        Fold().apply(connection, records)
    return {"account_id": account, "days": days, "models": len(names), "usage_facts": len(values) - 1,
            "hourly_rows": days * 24 * len(names), "valid_from": start}


async def dashboard_latency(url: str, requests: int, days: int = 30, models: int = 4) -> dict:
    """Fill `url` with a month of one account's hourly usage; time the usage and forecast API."""
    import aiohttp
    from aiohttp import web

    from projections.dashboard.app import Dashboard, build_app
    from projections.store import open_engine

    engine = open_engine(url)
    now = datetime.now(timezone.utc)
    began = time.perf_counter()
    filled = await asyncio.to_thread(month_of_usage, engine, now, days, models)
    fill_s = time.perf_counter() - began
    runner = web.AppRunner(build_app(Dashboard(engine), sampler=False), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}/api/accounts/{filled['account_id']}"
    hour_now = now.replace(minute=0, second=0, microsecond=0)
    usage_url = f"{base}/usage?bucket=hour&from={stamp(filled['valid_from'])}&to={stamp(hour_now + timedelta(hours=1))}"
    forecast_url = f"{base}/forecast"
    out: dict = {"provider": "bench.projections (projections/dashboard/bench.py "
                             f"{'present' if _has_dashboard_bench() else 'absent'})",
                 "database": "sqlite", "fill_seconds": round(fill_s, 2), **{k: v for k, v in filled.items()
                                                                            if k != "valid_from"},
                 "requests_per_endpoint": requests, "concurrency": 1}
    try:
        async with aiohttp.ClientSession() as session:
            for name, target in (("usage", usage_url), ("forecast", forecast_url)):
                timings, size, rows = [], 0, None
                for index in range(DASHBOARD_WARMUP + requests):
                    started = time.perf_counter()
                    async with session.get(target) as response:
                        body = await response.read()
                        status = response.status
                    elapsed = (time.perf_counter() - started) * 1000
                    if status != 200:
                        raise RuntimeError(f"dashboard {name}: HTTP {status}: {body[:300]!r}")
                    if index >= DASHBOARD_WARMUP:
                        timings.append(elapsed)
                    size = len(body)
                    if name == "usage" and rows is None:
                        rows = len(orjson.loads(body)["rows"])
                out[name] = {**summary_ms(timings), "bytes": size, **({"rows": rows} if rows is not None else {})}
    finally:
        await runner.cleanup()
        engine.dispose()
    return out


def _has_dashboard_bench() -> bool:
    try:
        return importlib.util.find_spec("projections.dashboard.bench") is not None
    except (ImportError, ValueError):
        return False


async def dashboard_measure(work_dir: Path, sizes: ProjectionsBenchSizes) -> dict:
    """The dashboard's own measure (`projections.dashboard.bench.measure`, by the dashboard's
    authors) when it is there, in this report's shape; else `dashboard_latency` here."""
    if _has_dashboard_bench():
        from projections.dashboard import bench as provided

        if hasattr(provided, "measure"):
            raw = await provided.measure(None, hours=sizes.dashboard_days * 24, requests=sizes.dashboard_requests)
            return from_dashboard_bench(raw)
    return await dashboard_latency(f"sqlite:///{work_dir / 'dashboard.db'}", sizes.dashboard_requests,
                                   sizes.dashboard_days, sizes.dashboard_models)


def from_dashboard_bench(raw: dict) -> dict:
    """`projections.dashboard.bench.measure()`'s result with this section's keys (usage, forecast) added."""
    endpoints = raw["endpoints"]

    def timing(name: str) -> dict:
        value = endpoints[name]
        return {"count": value["requests"], "p50_ms": value["p50_ms"], "p99_ms": value["p99_ms"],
                "max_ms": value["max_ms"]}
    rows = raw.get("rows") or {}
    return {"provider": "projections.dashboard.bench.measure", "database": raw.get("database"),
            "days": raw["hours"] // 24, "hours": raw["hours"], "models": raw["models"],
            "hourly_rows": rows.get("usage_hourly", raw["hours"] * raw["models"]),
            "requests_per_endpoint": endpoints["forecast"]["requests"], "concurrency": 1,
            "usage": timing("usage_month_hourly"), "forecast": timing("forecast"),
            "api_p99_ms": raw.get("api_p99_ms"), "endpoints": endpoints}


# ---------------------------------------------------------------- the section

async def projections_section(bootstrap: str, work_dir: Path, sizes: ProjectionsBenchSizes, log,
                              pipeline_events_per_s: float | None = None) -> dict:
    """Load a worker, fold its facts (SQLite, PostgreSQL), then the live lag, then the dashboard API."""
    from bench.pipeline import count_topic_records, produce_all, recent_day, wait_accounts_active

    ns = Namespace()
    data_dir = work_dir / f"{ns.name}-projections"
    data_dir.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(bootstrap, ns, data_dir / "worker").start()
    postgres = LocalPostgres(data_dir)
    result: dict = {}
    try:
        worker.wait_healthy(timeout_s=120)
        accounts = [f"proj-{index}" for index in range(sizes.accounts)]
        workload = generate(sizes.events, accounts, recent_day(), seed=13, id_prefix="proj")
        await produce_all(bootstrap, ns.topic("plans"), workload.plans)
        await wait_accounts_active(worker, accounts)
        await produce_all(bootstrap, ns.topic("usage"), workload.wire)
        applied, first_s, last_s = await count_topic_records(bootstrap, ns.topic("balance-changed"),
                                                             len(workload.usage), timeout_s=max(120.0, sizes.events / 50),
                                                             marker=USAGE_MARKER)
        load = {"accounts": sizes.accounts, "usage_events_sent": len(workload.wire),
                "usage_events_distinct": len(workload.usage), "usage_facts": applied,
                "complete": applied == len(workload.usage),
                "worker_events_per_s": round(len(workload.wire) / max(last_s - first_s, 1e-9), 1)}
        log(f"projections: {sizes.accounts:,} accounts, {applied:,} usage facts from the worker "
            f"({load['worker_events_per_s']:,.0f} events/s while loading)")
        await asyncio.sleep(1.0)  # the worker's last quota-status records of the load
        sqlite_url = f"sqlite:///{data_dir / 'projections.db'}"
        throughput = {"sqlite": await fold_backlog(bootstrap, ns, sqlite_url, "sqlite", timeout_s=600)}
        log(f"projections: projector into SQLite {throughput['sqlite']['events_per_s']} records/s "
            f"({throughput['sqlite']['records']:,} records, fold alone {throughput['sqlite']['fold_events_per_s']}/s)")
        if sizes.postgres and await asyncio.to_thread(postgres.start) is not None:
            pg_url = await asyncio.to_thread(postgres.fresh_database, f"bench_{ns.name.replace('-', '_')}"[:60])
            throughput["postgresql"] = await fold_backlog(bootstrap, ns, pg_url, "postgresql", timeout_s=600)
            log(f"projections: projector into PostgreSQL {throughput['postgresql']['events_per_s']} records/s "
                f"(fold alone {throughput['postgresql']['fold_events_per_s']}/s)")
        else:
            throughput["postgresql"] = {"skipped": postgres.error or "not asked (--smoke without PostgreSQL)"}
            log(f"projections: PostgreSQL skipped: {throughput['postgresql']['skipped']}")
        sqlite_rate = throughput["sqlite"]["events_per_s"]
        if pipeline_events_per_s:
            throughput["pipeline_events_per_s"] = pipeline_events_per_s
            throughput["pipeline_source"] = "the pipeline section of this run"
            throughput["sqlite_to_pipeline"] = round(sqlite_rate / pipeline_events_per_s, 3) if sqlite_rate else None
            pg_rate = throughput["postgresql"].get("events_per_s")
            if pg_rate:
                throughput["postgresql_to_pipeline"] = round(pg_rate / pipeline_events_per_s, 3)
        else:
            throughput["pipeline_events_per_s"] = None
            throughput["pipeline_source"] = ("the pipeline section did not run: the projector's rate alone (the "
                                             "worker's rate while loading this section is in load)")
        result.update(load=load, throughput=throughput)
        lag = await live_lag(bootstrap, ns, sqlite_url, sizes, log)
        result["lag"] = lag
        log(f"projections: fact -> row lag at {sizes.rate}/s for {sizes.seconds:g} s: p50 {lag['all_facts']['p50_ms']} "
            f"p99 {lag['all_facts']['p99_ms']} max {lag['all_facts']['max_ms']} ms over {lag['all_facts']['count']:,} "
            f"facts ({lag['usage_facts_folded']:,} of {lag['usage_events_sent']:,} usage facts)")
    finally:
        worker.stop()
        postgres.stop()
    dashboard = await dashboard_measure(data_dir, sizes)
    result["dashboard"] = dashboard
    log(f"projections: dashboard API ({dashboard['hourly_rows']:,} hourly rows): usage p50 {dashboard['usage']['p50_ms']} "
        f"p99 {dashboard['usage']['p99_ms']} ms, forecast p50 {dashboard['forecast']['p50_ms']} "
        f"p99 {dashboard['forecast']['p99_ms']} ms")
    return result
