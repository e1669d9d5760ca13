"""Operations outside the event flow need the admin token; the lookup stays read-only."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import events as ev
from deploy.localrun import http_post
from tests.support.kafka_io import instant, produce, recent_utc_day, wait_lookup

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests"


async def test_admin_refresh_needs_the_token_and_then_resets_every_account(kafka_bootstrap, namespace, start_worker):
    worker = start_worker(env={"TOKENPLAN_ADMIN_TOKEN": TOKEN})
    day = recent_utc_day()
    await produce(kafka_bootstrap, namespace.topic("plans"), [ev.purchase("adm", day)])
    await wait_lookup(worker, "adm", lambda body: body["status"] == "active")
    await produce(kafka_bootstrap, namespace.topic("usage"), [ev.usage("adm", day + timedelta(hours=1), miss=10)])
    await wait_lookup(worker, "adm", lambda body: body["credits_used"] == "1000")

    body = {"occurred_at": instant(day + timedelta(hours=2))}
    assert http_post(f"{worker.url}/admin/refresh", body)[0] == 401
    assert http_post(f"{worker.url}/admin/refresh", body, {"Authorization": "Bearer wrong"})[0] == 401
    status, answer = http_post(f"{worker.url}/admin/refresh", {"occurred_at": "yesterday"}, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and answer["reason"] == "invalid_timestamp"
    status, answer = http_post(f"{worker.url}/admin/refresh", body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 202 and "account_id" not in answer["published"]
    await wait_lookup(worker, "adm", lambda body: body["credits_used"] == "0")
    assert TOKEN not in worker.log_path.read_text(errors="replace")


async def test_admin_operations_are_disabled_without_a_configured_token(start_worker):
    worker = start_worker()
    status, answer = http_post(f"{worker.url}/admin/refresh", {"occurred_at": "2026-05-26T16:00:00Z"},
                               {"Authorization": "Bearer anything"})
    assert status == 403 and answer["error"] == "admin_disabled"
