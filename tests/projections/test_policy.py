"""The usage policy in the projections: policy-facts and policy violations folded (SQLite and PostgreSQL),
idempotent and independent of batch cuts, and shown by the account page, the operator page and the API."""
from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from projections.dashboard.app import Dashboard, build_app
from projections.fold import Fold
from projections.policy import RECENT_PER_KEY
from projections.store import SchemaMismatch, check_schema, create_schema, drop_schema, open_engine
from projections.tables import (alerts, policy_events, policy_key_state, policy_violations_hourly,
                                policy_violations_recent, webhook_deliveries)
from tests.projections.builders import T0, dump, record, reset_offsets
from tests.projections.dashboard_data import NOW, fill
from tests.projections.policy_data import RULE, fact, policy_record, reinstated, scenario, violation

POLICY_TABLES = ("policy_events", "policy_key_state", "policy_violations_hourly", "policy_violations_recent")


@pytest.fixture
def engine(database_url):
    reset_offsets()
    engine = open_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def fold(engine, records):
    with engine.begin() as connection:
        return Fold().apply(connection, records)


def rows(engine, table, order=None):
    with engine.connect() as connection:
        query = select(table) if order is None else select(table).order_by(*order)
        return [dict(row) for row in connection.execute(query).mappings()]


def test_facts_become_events_with_their_requests_and_the_latest_sets_the_key_state(engine):
    records = scenario(reinstate=False)
    result = fold(engine, records)
    assert result.folded == {"policy": 8, "policy-facts": 2} and result.unusable == 0
    events = rows(engine, policy_events, [policy_events.c.fact_offset])
    assert [e["type"] for e in events] == ["policy.warning", "key.suspended"]
    suspended = events[1]
    assert orjson.loads(suspended["request_event_ids"]) == [f"req-key-s-{n}" for n in range(1, 7)]
    assert orjson.loads(suspended["rules"]) == {RULE: 6} and suspended["violations"] == 6
    assert suspended["at"] == T0 + timedelta(minutes=6) and suspended["cause_event_id"] == "req-key-s-6:violation"
    [state] = rows(engine, policy_key_state)
    assert (state["status"], state["event_id"]) == ("suspended", "req-key-s-6:violation:key.suspended")

    # The operator's reinstatement: the input on tokenplan.policy is skipped, its fact sets the state.
    back = reinstated(at=T0 + timedelta(hours=3))
    again = fold(engine, [policy_record(back), policy_record(fact("key.reinstated", back, [], violations=0))])
    assert again.unusable == 0 and again.duplicates == 0
    [state] = rows(engine, policy_key_state)
    assert (state["status"], state["changed_at"]) == ("active", T0 + timedelta(hours=3))
    assert len(rows(engine, policy_events)) == 3


def test_violations_are_counted_per_key_rule_and_hour_and_the_latest_kept_per_key(engine):
    records = [policy_record(violation(n, at=T0 + timedelta(minutes=10 * n))) for n in range(1, 31)]  # 02:10..07:00
    records += [policy_record(violation(n, key="key-b", rule="sdk-default+machine-cadence",
                                        client=None, at=T0 + timedelta(minutes=n))) for n in range(1, 4)]
    fold(engine, records[:7])
    fold(engine, records[7:])
    hourly = {(r["key_id"], r["rule"], r["hour_start"]): r["count"] for r in rows(engine, policy_violations_hourly)}
    assert hourly[("key-s", RULE, T0)] == 5 and hourly[("key-s", RULE, T0 + timedelta(hours=1))] == 6
    assert sum(c for (k, _r, _h), c in hourly.items() if k == "key-s") == 30
    assert hourly == {**{k: v for k, v in hourly.items() if k[0] == "key-s"},
                      ("key-b", "sdk-default+machine-cadence", T0): 3}
    recent = rows(engine, policy_violations_recent)
    kept = sorted(r["request_event_id"] for r in recent if r["key_id"] == "key-s")
    assert len(kept) == RECENT_PER_KEY
    assert kept == sorted(f"req-key-s-{n}" for n in range(31 - RECENT_PER_KEY, 31)), "the latest ones"
    assert {r["client"] for r in recent if r["key_id"] == "key-b"} == {None}
    assert {r["client"] for r in recent if r["key_id"] == "key-s"} == {"python-requests/2.32.3"}


def test_redelivered_policy_records_change_nothing_and_unusable_ones_are_counted(engine):
    batch = scenario()
    fold(engine, batch)
    with engine.connect() as connection:
        before = dump(connection)
    assert fold(engine, batch).stale == len(batch)
    moved = [type(r)(r.kind, r.topic, r.partition, 100 + i, r.timestamp_ms, r.value, r.key) for i, r in enumerate(batch)]
    redelivered = fold(engine, moved)
    assert redelivered.duplicates == 8 + 3, "violations and facts (the skipped key.reinstated input has no id)"
    with engine.connect() as connection:
        after = dump(connection)
    assert {k: v for k, v in after.items() if k != "projector_offsets"} == \
           {k: v for k, v in before.items() if k != "projector_offsets"}
    bad = fold(engine, [record("policy", {"type": "policy.something"}, offset=500),
                        record("policy-facts", None, offset=500),
                        record("policy-facts", {"type": "policy.warning", "event_id": "x"}, offset=501)])
    assert bad.unusable == 3 and not bad.folded


def test_where_batches_are_cut_does_not_change_the_policy_tables(database_url):
    reset_offsets()
    records = scenario(count=RECENT_PER_KEY + 7)
    records += scenario(key="key-t", count=4, reinstate=False)
    records += [policy_record(violation(n, key="key-u", account="bob"), partition=1) for n in range(1, 30)]
    engine = open_engine(database_url)
    dumps = []
    for size in (len(records), 1, 4, 9):
        drop_schema(engine)
        create_schema(engine)
        for start in range(0, len(records), size):
            fold(engine, records[start:start + size])
        with engine.connect() as connection:
            dumps.append(dump(connection))
    engine.dispose()
    assert all(d == dumps[0] for d in dumps)
    assert {name: len(dumps[0][name]) for name in POLICY_TABLES} == {
        "policy_events": 3 + 1, "policy_key_state": 1, "policy_violations_hourly": 3,
        "policy_violations_recent": RECENT_PER_KEY + 4 + RECENT_PER_KEY}


def test_a_warning_and_a_suspension_are_alerts_on_the_alert_channel_once_and_a_reinstatement_is_not(engine):
    records = scenario()  # warning, suspension, reinstatement of key-s
    with engine.begin() as connection:
        result = Fold(webhook_url="http://hook.example/alerts").apply(connection, records)
    warning, suspension = result.alerts
    assert (warning.kind, suspension.kind) == ("policy.warning", "key.suspended")
    assert suspension.alert_id == "alert:policy:req-key-s-6:violation:key.suspended"
    assert (suspension.key_id, suspension.at, suspension.threshold) == ("key-s", T0 + timedelta(minutes=6), None)
    body = orjson.loads(suspension.body)
    assert body["type"] == "policy.alert" and body["kind"] == "key.suspended" and body["key_id"] == "key-s"
    assert body["alert_id"] == suspension.alert_id and body["fact_event_id"] == "req-key-s-6:violation:key.suspended"
    assert body["request_event_ids"] == [f"req-key-s-{n}" for n in range(1, 7)] and body["rules"] == {RULE: 6}
    assert "tp-" not in suspension.body.decode() and body["occurred_at"] == "2026-05-01T02:06:00Z"
    stored = rows(engine, alerts, [alerts.c.at])
    assert [(r["kind"], r["key_id"], r["published_at"]) for r in stored] == [
        ("policy.warning", "key-s", None), ("key.suspended", "key-s", None)]
    assert {r["alert_id"] for r in rows(engine, webhook_deliveries)} == {warning.alert_id, suspension.alert_id}
    moved = [type(r)(r.kind, r.topic, r.partition, 100 + i, r.timestamp_ms, r.value, r.key) for i, r in
             enumerate(records)]
    assert fold(engine, moved).alerts == [], "a redelivered fact alerts once"
    assert len(rows(engine, alerts)) == 2


def test_tables_of_an_older_layout_are_refused_with_the_way_out(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    with engine.begin() as connection:  # the alerts table as the first projector made it
        connection.exec_driver_sql("CREATE TABLE alerts (alert_id VARCHAR PRIMARY KEY, account_id VARCHAR NOT NULL, "
                                   "package_valid_from DATETIME NOT NULL, threshold INTEGER NOT NULL, "
                                   "crossed_at DATETIME NOT NULL, body TEXT NOT NULL)")
    with pytest.raises(SchemaMismatch, match=r"alerts .* lacks .*kind.*--rebuild"):
        create_schema(engine)
    drop_schema(engine)
    create_schema(engine)
    check_schema(engine)  # the current layout passes
    engine.dispose()


# -- the dashboard -----------------------------------------------------------------------------

@pytest.fixture
async def client(engine):
    fill(engine)  # alice's and bob's ledger history
    base = NOW - timedelta(hours=5)
    fold(engine, scenario(key="key-script", base=base, count=9, reinstate=False)
         + scenario(key="key-back", base=base - timedelta(hours=40), count=7))  # older: outside the 24 h
    app = build_app(Dashboard(engine, now=lambda: NOW), sampler=False)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_policy_api_per_key_state_violations_by_rule_and_the_triggering_requests(client):
    response = await client.get("/api/accounts/alice/policy")
    assert response.status == 200
    body = await response.json()
    assert body["suspended"] == 1 and body["to"] == "2026-05-02T15:00:00Z" and body["from"] == "2026-05-01T15:00:00Z"
    script, back = body["keys"]  # suspended keys first
    assert (script["key_id"], script["status"], back["key_id"], back["status"]) == \
           ("key-script", "suspended", "key-back", "active")
    assert script["violations_24h"] == 9 and script["violations_by_rule_24h"] == {RULE: 9}
    assert back["violations_24h"] == 0 and back["violations_by_rule_24h"] == {}
    assert [f["type"] for f in script["facts"]] == ["key.suspended", "policy.warning"]
    suspension = script["facts"][0]
    assert suspension["requests"] == 6 and suspension["request_event_ids"][:2] == ["req-key-script-1", "req-key-script-2"]
    assert suspension["rules"] == {RULE: 6} and suspension["window_s"] == 86400
    assert script["changed_by"] == suspension["event_id"] and script["reason"] == suspension["message"]
    assert [f["type"] for f in back["facts"]] == ["key.reinstated", "key.suspended", "policy.warning"]
    assert len(script["recent_violations"]) == 9 and script["recent_violations"][0]["request_event_id"] == "req-key-script-9"
    assert (await client.get("/api/accounts/nobody/policy")).status == 404
    carol = await (await client.get("/api/accounts/bob/policy")).json()
    assert carol["keys"] == [] and carol["suspended"] == 0


async def test_account_page_policy_card_and_operator_suspended_keys(client):
    api = await (await client.get("/api/accounts/alice/policy")).json()
    html = await (await client.get("/accounts/alice")).text()
    assert 'id="policy"' in html and "Usage policy" in html and "1 key(s) suspended" in html
    assert 'id="policy-status-key-script" data-value="suspended"' in html
    assert 'id="policy-status-key-back" data-value="active"' in html
    assert f'id="policy-violations-24h-key-script" data-value="{api["keys"][0]["violations_24h"]}"' in html
    assert f'id="policy-rule-key-script-{RULE}" data-value="9"' in html
    suspension = api["keys"][0]["facts"][0]
    assert f'id="policy-requests-{suspension["event_id"]}" data-value="6"' in html
    assert "<code>req-key-script-5</code>" in html and "<code>req-key-script-6</code>" not in html.split(
        f'policy-requests-{suspension["event_id"]}')[1].split("</td>")[0], "the first five, then a count"
    assert "+ 1 more" in html
    alerts_card = html.split('id="alerts"')[1].split("</section>")[0]
    assert "policy.warning of key key-script" in alerts_card and "key.suspended of key key-script" in alerts_card
    assert "90 % of the pool" in alerts_card, "threshold alerts share the card"
    quiet = await (await client.get("/accounts/bob")).text()
    assert "no non-coding request seen" in quiet and "suspended for non-coding" not in quiet

    operator = await (await client.get("/")).text()
    assert 'id="suspended-keys"' in operator and 'id="suspended-key-script"' in operator
    assert 'id="suspended-total" data-value="1"' in operator and "key-back" not in operator
    fleet = await (await client.get("/api/fleet")).json()
    assert [k["key_id"] for k in fleet["suspended_keys"]] == ["key-script"] and fleet["suspended_keys_total"] == 1
    assert {"tokenplan.policy", "tokenplan.policy-facts"} <= {t["topic"] for t in fleet["topics"]["topics"]}
