"""The projector against a real worker and broker: rows equal the lookup, a crash mid-way
double-counts nothing, re-projection gives the same tables on SQLite and PostgreSQL, and
the 80/90/100 % alerts arrive once each on Kafka and at a signed webhook that fails first."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from aiohttp import web
from sqlalchemy import func, select

from deploy.localrun import REPO
from projections.projector import Projector
from projections.settings import ProjectorSettings
from projections.store import drop_schema, open_engine
from projections.tables import (alerts, balance_timeline, dead_letter_reasons, package_history, projector_offsets,
                                quota_status, usage_hourly, webhook_deliveries)
from projections.webhooks import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.projections.builders import dump
from tests.projections.conftest import fresh_database, postgres_url  # noqa: F401  (the session fixture)
from tests.support.events import purchase, usage
from tests.support.kafka_io import consume_all, lookup, produce, produce_records, recent_utc_day, wait_for

pytestmark = pytest.mark.integration

A, B, C = "proj-a", "proj-b", "proj-c"
SECRET = "webhook-test-secret"
DAY = recent_utc_day()
#: Small events for B so the crash lands mid-way (one record per batch in the first run).
B_EVENTS = 240


def _usage_events() -> list[dict]:
    """A: 11 peak charges of 300M (80 % of 4.1B at the 11th), then off-peak 240M (86 %),
    240M (92 %: 90 %) and 2.4B (over 100 %). B: many small charges over a day, one free model.
    C: no package (a dead letter)."""
    pro = "mimo-v2.5-pro"
    events = [usage(A, DAY + timedelta(hours=1 + i), model=pro, miss=1_000_000) for i in range(11)]
    events += [usage(A, DAY + timedelta(hours=17), model=pro, miss=1_000_000),
               usage(A, DAY + timedelta(hours=18), model=pro, miss=1_000_000),
               usage(A, DAY + timedelta(hours=20), model=pro, miss=10_000_000)]
    events += [usage(B, DAY + timedelta(minutes=6 * i), model="mimo-v2.5", hit=100, miss=1000, output=50)
               for i in range(B_EVENTS)]
    events += [usage(B, DAY + timedelta(hours=2), model="MiMo-V2.5-TTS", output=500),
               usage(C, DAY + timedelta(hours=1))]
    return events


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap, ns, worker):
    """Purchases, then usage, through Kafka; waits until the worker applied the last event of each account."""
    async def produce_all() -> dict:
        await produce(kafka_bootstrap, ns.topic("plans"), [purchase(A, DAY), purchase(B, DAY)])
        for account in (A, B):
            await wait_for(lambda a=account: lookup(worker, a)[1].get("status") == "active", what=f"{account} active")
        events = _usage_events()
        sent = await produce(kafka_bootstrap, ns.topic("usage"), events)
        await produce_records(kafka_bootstrap, [(ns.topic("usage"), C.encode(), b"{not json")])
        last = {event["account_id"]: meta.offset for event, meta in zip(events, sent)}
        for account in (A, B):
            def applied(a=account):
                source = (lookup(worker, a)[1].get("as_of") or {}).get("source") or {}
                return source.get("topic") == ns.topic("usage") and source.get("offset") == last[a]
            await wait_for(applied, timeout_s=60, what=f"the worker to apply {account}'s last usage")
        return {"events": events}
    return asyncio.run(produce_all())


def settings_for(kafka_bootstrap, ns, url: str, **changes) -> ProjectorSettings:
    base = ProjectorSettings(bootstrap=kafka_bootstrap, app_id=ns.app_id, topic_prefix=ns.topic_prefix,
                             projections_url=url, progress_s=2.0, poll_ms=200, session_timeout_ms=6000)
    return ProjectorSettings(**{**base.__dict__, **changes})


def read(url: str, query) -> list:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query))
    finally:
        engine.dispose()


def table_dump(url: str) -> dict:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            return dump(connection)
    finally:
        engine.dispose()


def matches_lookup(url: str, worker) -> bool:
    """The projection says what the worker's lookup says, for A and B: used and remaining
    (the package's latest balance.changed), the usage rows' sum, the status."""
    for account in (A, B):
        truth = lookup(worker, account)[1]
        status = read(url, select(quota_status).where(quota_status.c.account_id == account))
        used = read(url, select(func.sum(usage_hourly.c.credits)).where(usage_hourly.c.account_id == account))
        packages = read(url, select(package_history).where(package_history.c.account_id == account))
        if not status or not packages or used[0][0] is None:
            return False
        if (status[0].status != truth["status"] or status[0].allowed != truth["allowed"]
                or used[0][0] != Decimal(truth["credits_used"])
                or packages[0].credits_used != Decimal(truth["credits_used"])
                or packages[0].credits_remaining != Decimal(truth["credits_remaining"])):
            return False
    return True


async def run_until(projector: Projector, condition, timeout_s: float = 60.0) -> None:
    """Run the projector in this loop until `condition()` holds; then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await wait_for(lambda: task.done() or condition(), timeout_s=timeout_s, what="the projection to converge")
        if task.done():
            task.result()
    finally:
        stop.set()
        await task


async def webhook_receiver(fail_first: int = 1):
    """A receiver that verifies the HMAC and answers 500 to the first `fail_first` POSTs."""
    seen: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"ok": verify(SECRET, request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER], body),
                     "alert_id": request.headers[ALERT_ID_HEADER], "body": orjson.loads(body)})
        return web.Response(status=500 if len(seen) <= fail_first else 200)

    app = web.Application()
    app.router.add_post("/alerts", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/alerts", seen


EXPECTED_ALERTS = {f"alert:{A}:{DAY.isoformat().replace('+00:00', 'Z')}:{t}" for t in (80, 90, 100)}
_state: dict = {}


async def test_crash_mid_way_then_restart_counts_once_matches_the_lookup_and_alerts_once(
        kafka_bootstrap, ns, worker, scenario, tmp_path):
    url = f"sqlite:///{tmp_path / 'projections.db'}"
    runner, hook, seen = await webhook_receiver(fail_first=1)
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, TOKENPLAN_APP_ID=ns.app_id,
               TOKENPLAN_TOPIC_PREFIX=ns.topic_prefix, TOKENPLAN_PROJECTIONS_URL=url,
               TOKENPLAN_PROJECTOR_BATCH_MAX="1", TOKENPLAN_SESSION_TIMEOUT_MS="6000",
               TOKENPLAN_WEBHOOK_URL=hook, TOKENPLAN_WEBHOOK_SECRET=SECRET, TOKENPLAN_WEBHOOK_BACKOFF_S="0.2")
    log = open(tmp_path / "projector-1.log", "wb")
    first = subprocess.Popen([sys.executable, "-m", "streams.cli", "projector"], cwd=REPO, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        def folded() -> int:
            try:
                return read(url, select(func.coalesce(func.sum(projector_offsets.c.next_offset), 0)))[0][0]
            except Exception:  # the tables are not created yet
                return 0
        await wait_for(lambda: folded() >= 40 or first.poll() is not None, timeout_s=60, what="a first projection")
        first.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, no last commit
        first.wait(timeout=10)
        at_crash = folded()
        rows_at_crash = read(url, select(func.count()).select_from(balance_timeline))[0][0]
        assert rows_at_crash < len(scenario["events"]), "the crash should land mid-way"

        settings = settings_for(kafka_bootstrap, ns, url, webhook_url=hook, webhook_secret=SECRET,
                                webhook_backoff_s=0.2, batch_max=50)
        restarted = Projector(settings)

        def converged() -> bool:
            delivered = read(url, select(func.count()).select_from(webhook_deliveries)
                             .where(webhook_deliveries.c.status == "delivered"))[0][0]
            return matches_lookup(url, worker) and delivered == len(EXPECTED_ALERTS)
        await run_until(restarted, converged)
    finally:
        if first.poll() is None:
            first.kill()
        await runner.cleanup()

    assert folded() > at_crash
    # No double counting: one timeline row per distinct balance.changed in Kafka.
    facts = [orjson.loads(value) for _k, value in await consume_all(kafka_bootstrap, ns.topic("balance-changed"))]
    assert read(url, select(func.count()).select_from(balance_timeline))[0][0] == len({f["event_id"] for f in facts})
    # Tokens by model, when the facts carry what was used (schema_version 2).
    if all(f.get("usage") for f in facts if f["cause_type"] == "usage"):
        tokens = read(url, select(func.sum(usage_hourly.c.input_cache_miss_tokens)).where(usage_hourly.c.account_id == B))
        assert tokens[0][0] == 1000 * B_EVENTS
        models = {row.model for row in read(url, select(usage_hourly.c.model).where(usage_hourly.c.account_id == B))}
        assert {m.lower() for m in models} == {"mimo-v2.5", "mimo-v2.5-tts"}
    offpeak = read(url, select(func.sum(usage_hourly.c.credits_offpeak)).where(usage_hourly.c.account_id == A))[0][0]
    assert offpeak == Decimal(240_000_000) * 2 + Decimal(2_400_000_000)
    reasons = {row.reason: row.count for row in read(url, select(dead_letter_reasons))}
    assert reasons.get("usage_outside_package") == 1 and sum(reasons.values()) == 2
    # Alerts: exactly 80, 90, 100 for A, once each in the table; on Kafka at least once, same ids.
    stored = read(url, select(alerts))
    assert {row.alert_id for row in stored} == EXPECTED_ALERTS and all(row.published_at for row in stored)
    published = [orjson.loads(v)["alert_id"] for _k, v in await consume_all(kafka_bootstrap, ns.topic("alerts"))]
    assert set(published) == EXPECTED_ALERTS
    # The webhook: every body signed correctly; the forced failure retried and recorded.
    assert all(hit["ok"] for hit in seen) and {hit["alert_id"] for hit in seen} == EXPECTED_ALERTS
    deliveries = read(url, select(webhook_deliveries))
    assert all(row.status == "delivered" for row in deliveries)
    retried = [row for row in deliveries if row.attempts >= 2]
    assert retried and retried[0].last_error.startswith("HTTP 500")
    _state["sqlite_url"] = url


async def test_dropping_the_database_and_projecting_again_gives_identical_tables(kafka_bootstrap, ns, worker):
    url = _state.get("sqlite_url")
    if url is None:
        pytest.skip("needs the first test's projection")
    # Catch the original up on anything new, then project from scratch with other batch cuts.
    await Projector(settings_for(kafka_bootstrap, ns, url, batch_max=50)).run(idle_exit_s=2)
    original = table_dump(url)
    engine = open_engine(url)
    drop_schema(engine)
    engine.dispose()
    await Projector(settings_for(kafka_bootstrap, ns, url, batch_max=7, group=f"{ns.app_id}-reproject")
                    ).run(idle_exit_s=2)
    assert table_dump(url) == original
    _state["dump"] = original


async def test_postgresql_gives_the_same_tables(kafka_bootstrap, ns, worker, postgres_url):  # noqa: F811
    expected = _state.get("dump")
    if expected is None:
        pytest.skip("needs the SQLite projection")
    url = fresh_database(postgres_url)
    await Projector(settings_for(kafka_bootstrap, ns, url, group=f"{ns.app_id}-pg")).run(idle_exit_s=2)
    assert matches_lookup(url, worker)
    assert table_dump(url) == expected
    engine = open_engine(url)
    drop_schema(engine)
    engine.dispose()
    await Projector(settings_for(kafka_bootstrap, ns, url, batch_max=11, group=f"{ns.app_id}-pg2")).run(idle_exit_s=2)
    assert table_dump(url) == expected
