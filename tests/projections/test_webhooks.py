"""Webhook signing and delivery against a real local aiohttp receiver (no Kafka)."""
from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import select

from projections.fold import Fold
from projections.store import create_schema, open_engine
from projections.tables import webhook_deliveries
from projections.webhooks import (ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, backoff_s,
                                  sign, verify)
from tests.projections.builders import T0, balance, package, record, reset_offsets, usage_object

SECRET = "s3cret"


def test_signature_round_trip_and_refusals():
    body = b'{"alert_id": "a"}'
    signature = sign(SECRET, 1_700_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, "1700000000", signature, body, now=1_700_000_010)
    assert not verify(SECRET, "1700000000", signature, body + b" ", now=1_700_000_010)  # body changed
    assert not verify("other", "1700000000", signature, body, now=1_700_000_010)  # wrong secret
    assert not verify(SECRET, "1700000000", signature, body, now=1_700_000_000 + 301)  # stale: a replay


def test_backoff_doubles_up_to_its_cap():
    assert [backoff_s(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def _receiver(fail_first: int):
    """A receiver that verifies signatures and answers 500 to the first `fail_first` POSTs."""
    seen: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET, request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER], body)
        seen.append({"ok": ok, "alert_id": request.headers[ALERT_ID_HEADER], "body": orjson.loads(body)})
        if len(seen) <= fail_first:
            return web.Response(status=500, text="receiver down")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/hook", seen


def _engine_with_alerts(url: str):
    reset_offsets()
    engine = open_engine("sqlite://")
    create_schema(engine)
    pkg = package(limit="100")
    with engine.begin() as connection:
        Fold((80,), url).apply(connection, [record("balance-changed", balance("b", T0, "90", "90", pkg=pkg,
                                                                            usage=usage_object()))])
    return engine


def _delivery(engine) -> dict:
    with engine.connect() as connection:
        return dict(connection.execute(select(webhook_deliveries)).mappings().one())


async def test_a_failing_receiver_is_retried_with_backoff_and_every_failure_recorded():
    runner, url, seen = await _receiver(fail_first=2)
    try:
        engine = _engine_with_alerts(url)
        sender = WebhookSender(engine, url, SECRET, attempts_max=5, backoff_base_s=0.05, backoff_max_s=0.2)
        async with aiohttp.ClientSession() as session:
            await sender.deliver_due(session)
            first = _delivery(engine)
            assert first["status"] == "pending" and first["attempts"] == 1 and first["last_status_code"] == 500
            assert "receiver down" in first["last_error"] and first["next_attempt_at"] is not None
            for _ in range(40):
                if _delivery(engine)["status"] == "delivered":
                    break
                await asyncio.sleep(0.05)
                await sender.deliver_due(session)
        done = _delivery(engine)
        assert done["status"] == "delivered" and done["attempts"] == 3 and done["last_status_code"] == 204
        assert "receiver down" in done["last_error"]  # the failures stay visible
        assert all(hit["ok"] for hit in seen) and len(seen) == 3
        assert {hit["alert_id"] for hit in seen} == {hit["body"]["alert_id"] for hit in seen} == {
            "alert:alice:2026-05-01T02:00:00Z:80"}
    finally:
        await runner.cleanup()


async def test_gives_up_after_the_attempts_limit():
    engine = _engine_with_alerts("http://127.0.0.1:9/unreachable")
    sender = WebhookSender(engine, "http://127.0.0.1:9/unreachable", SECRET, attempts_max=2, backoff_base_s=0.01,
                           timeout_s=2)
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            await sender.deliver_due(session)
            if _delivery(engine)["status"] == "failed":
                break
            await asyncio.sleep(0.02)
    failed = _delivery(engine)
    assert failed["status"] == "failed" and failed["attempts"] == 2 and failed["next_attempt_at"] is None
    assert failed["last_error"] and failed["last_status_code"] is None
