"""The dashboard's reads and JSON API, in process, on SQLite and PostgreSQL filled by the projector's Fold."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from projections.dashboard.app import Dashboard, build_app
from projections.queries import account_forecast
from projections.store import create_schema, open_engine
from projections.tables import webhook_deliveries
from tests.projections.builders import T0, instant
from tests.projections.dashboard_data import NOW, fill


@pytest.fixture
def engine(database_url):
    engine = open_engine(database_url)
    create_schema(engine)
    fill(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def client(engine):
    app = build_app(Dashboard(engine, now=lambda: NOW), sampler=False)
    async with TestClient(TestServer(app)) as client:
        yield client


async def get(client, path: str, status: int = 200) -> dict:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_usage_per_hour_rows_carry_the_contract_fields_as_strings(client):
    body = await get(client, f"/api/accounts/alice/usage?from={instant(T0)}&to={instant(T0 + timedelta(days=2))}")
    assert body["bucket"] == "hour" and body["from"] == "2026-05-01T02:00:00Z"
    first = body["rows"][0]
    assert first == {"bucket_start": "2026-05-01T03:00:00Z", "model": "MiMo-V2.5-Pro", "requests": 1,
                     "input_cache_hit_tokens": 0, "input_cache_miss_tokens": 1000, "output_tokens": 50,
                     "credits": "1000", "credits_offpeak": "0", "credits_saved": "0"}
    free = [row for row in body["rows"] if row["model"] == "MiMo-V2.5-TTS"]
    assert free and free[0]["credits"] == "0" and free[0]["output_tokens"] == 55  # free models are rows with 0 credits
    night = next(row for row in body["rows"] if row["bucket_start"] == "2026-05-01T17:00:00Z")
    assert (night["credits"], night["credits_offpeak"], night["credits_saved"]) == ("4000", "4000", "1000")
    assert sum(Decimal(row["credits"]) for row in body["rows"]) == 9000


async def test_day_buckets_are_the_sums_of_their_hours(client):
    span = f"from=2026-05-01T00:00:00Z&to=2026-05-03T00:00:00Z"
    hours = (await get(client, f"/api/accounts/alice/usage?{span}&bucket=hour"))["rows"]
    days = (await get(client, f"/api/accounts/alice/usage?{span}&bucket=day"))["rows"]
    expected: dict = defaultdict(lambda: defaultdict(Decimal))
    for row in hours:
        for name in ("input_cache_hit_tokens", "output_tokens", "credits", "credits_offpeak", "credits_saved"):
            expected[(row["bucket_start"][:10] + "T00:00:00Z", row["model"])][name] += Decimal(row[name])
    assert {(row["bucket_start"], row["model"]) for row in days} == set(expected)
    for row in days:
        for name, value in expected[(row["bucket_start"], row["model"])].items():
            assert Decimal(row[name]) == value, (row, name)


@pytest.mark.parametrize("query, words", [
    ("bucket=week", "bucket='week'"), ("from=yesterday", "from='yesterday'"),
    ("from=2026-05-02T00:00:00", "from="),  # no offset: ambiguous by 16 hours
    ("from=2026-05-03T00:00:00Z&to=2026-05-02T00:00:00Z", "must be before"),
    ("from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "at most 400"),
])
async def test_bad_parameters_are_400_with_the_reason(client, query, words):
    body = await get(client, f"/api/accounts/alice/usage?{query}", status=400)
    assert body["error"] == "bad_request" and words in body["message"]


@pytest.mark.parametrize("path", ["/api/accounts/nobody", "/api/accounts/nobody/usage", "/api/accounts/nobody/forecast"])
async def test_an_unknown_account_is_a_404_json(client, path):
    body = await get(client, path, status=404)
    assert body == {"error": "not_found", "message": "unknown account 'nobody'", "account_id": "nobody"}


async def test_unknown_account_page_is_404_html(client):
    response = await client.get("/accounts/nobody")
    assert response.status == 404 and "Unknown account" in await response.text()


async def test_account_credits_come_from_the_last_balance_change_the_status_gives_as_of(client):
    body = await get(client, "/api/accounts/alice")
    # quota-status was last published at 8 000 used (credit steps); two charges came after it.
    assert body["status"]["credits_remaining"] == "2000"
    assert body["status"]["as_of"]["computed_at"] == "2026-05-02T08:10:00Z"
    assert body["credits"] == {"credits_limit": "10000", "credits_used": "9000", "credits_remaining": "1000",
                               "source": "balance-changed", "at": "2026-05-02T14:10:00Z", "event_id": "use-7"}


async def test_forecast_is_the_projectors_with_its_figures(client, engine):
    body = await get(client, "/api/accounts/alice/forecast")
    with engine.connect() as connection:
        expected = account_forecast(connection, "alice", NOW)
    assert body["credits_remaining"] == "1000" and body["valid_until"] == "2026-05-31T02:00:00Z"
    assert [pace["window_hours"] for pace in body["paces"]] == [24, 168]
    for pace, want in zip(body["paces"], expected.paces):
        assert pace["run_out_at"] == instant(want.run_out_at)
        micro = Decimal("0.000001")
        assert Decimal(pace["credits"]) == want.credits.quantize(micro)
        assert Decimal(pace["credits_offpeak"]) == want.credits_offpeak.quantize(micro)
    assert "0.8" in body["rule"]


async def test_fleet_counts_statuses_exhaustions_dead_letters_and_webhook_failures(client, engine):
    with engine.begin() as connection:
        connection.execute(webhook_deliveries.insert(), [
            {"alert_id": "alert:alice:x:80", "url": "http://hook", "status": "failed", "attempts": 10,
             "last_status_code": 500, "last_error": "HTTP 500", "last_attempt_at": NOW, "delivered_at": None},
            {"alert_id": "alert:alice:x:90", "url": "http://hook", "status": "delivered", "attempts": 1,
             "last_status_code": 200, "last_error": None, "last_attempt_at": NOW, "delivered_at": NOW}])
    body = await get(client, "/api/fleet")
    assert body["accounts_by_status"] == {"active": 1, "exhausted": 1}
    assert [row["account_id"] for row in body["recently_exhausted"]] == ["bob"]
    assert [(row["reason"], row["count"]) for row in body["dead_letters_by_reason"]] == [
        ("usage_before_package", 2), ("invalid_event", 1)]
    assert [row["alert_id"] for row in body["webhook_failures"]] == ["alert:alice:x:80"]
    assert body["webhook_deliveries"] == {"delivered": 1, "failed": 1}
    topics = {row["topic"]: row for row in body["topics"]["topics"]}
    assert topics["tokenplan.balance-changed"]["folded"] == 11 and topics["tokenplan.balance-changed"]["lag"] is None
    assert body["topics"]["kafka"] == "no Kafka configured"
    assert body["usage_24h"][0]["credits"] == "7250"  # the last 24 h before NOW, all accounts
    page = await client.get("/")
    assert "HTTP 500" in await page.text()


async def test_health_answers_503_until_the_projector_created_its_tables():
    engine = open_engine("sqlite://")
    async with TestClient(TestServer(build_app(Dashboard(engine), sampler=False))) as client:
        body = await get(client, "/health", status=503)
        assert "tokenplan projector" in body["message"]
        create_schema(engine)
        assert (await get(client, "/health"))["status"] == "ok"
