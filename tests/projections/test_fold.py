"""The fold on in-memory SQLite: rows, exact decimals, idempotence, batch-cut independence, alerts."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from projections.fold import Fold
from projections.policy import RECENT_PER_KEY
from projections.store import create_schema, drop_schema, open_engine
from projections.tables import (alerts, balance_timeline, dead_letter_reasons, fleet_usage_hourly, package_history,
                                quota_events, quota_status, usage_hourly)
from projections.types import to_micro
from tests.projections.builders import (T0, balance, dump, package, quota, record, rejected, reset_offsets, status,
                                        usage_object)
from tests.projections.policy_data import scenario


@pytest.fixture
def engine(database_url):
    """Every fold test runs on SQLite and on PostgreSQL: the same code, the same rows."""
    reset_offsets()
    engine = open_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def fold(engine, records, fold_=None):
    with engine.begin() as connection:
        return (fold_ or Fold()).apply(connection, records)


def rows(engine, table):
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(table)).mappings()]


def test_usage_rows_per_account_model_hour_and_per_cluster_protocol_hour(engine):
    peak, night = T0 + timedelta(hours=10), T0 + timedelta(hours=15)  # 12:00 and 17:00 UTC
    fold(engine, [
        record("balance-changed", balance("b1", peak, "3000", "3000", usage=usage_object(miss=10))),
        record("balance-changed", balance("b2", peak + timedelta(minutes=5), "3000.5", "0.5",
                                          usage=usage_object(hit=1, output=0))),
        record("balance-changed", balance("b3", night, "3240.5", "240", usage=usage_object(
            miss=1, offpeak=True, saved="60", cluster="ams", protocol="openai"))),
        record("balance-changed", balance("b4", night, "3240.5", "0", usage=usage_object(
            model="MiMo-V2.5-TTS", output=7, offpeak=True))),
    ])
    by_key = {(r["model"], r["hour_start"].hour): r for r in rows(engine, usage_hourly)}
    noon = by_key[("MiMo-V2.5-Pro", 12)]
    assert (noon["requests"], noon["input_cache_hit_tokens"], noon["input_cache_miss_tokens"]) == (2, 1, 10)
    assert noon["credits"] == Decimal("3000.5") and noon["credits_offpeak"] == 0 and noon["credits_saved"] == 0
    evening = by_key[("MiMo-V2.5-Pro", 17)]
    assert (evening["credits"], evening["credits_offpeak"], evening["credits_saved"]) == (240, 240, 60)
    free = by_key[("MiMo-V2.5-TTS", 17)]
    assert free["credits"] == 0 and free["output_tokens"] == 7  # free models are rows with 0 credits
    fleet = {(r["cluster"], r["protocol"], r["hour_start"].hour): r for r in rows(engine, fleet_usage_hourly)}
    assert fleet[("ams", "openai", 17)]["credits_offpeak"] == 240
    assert fleet[("sgp", "anthropic", 12)]["requests"] == 2 and fleet[("sgp", "anthropic", 17)]["requests"] == 1


def test_a_fact_without_usage_object_is_counted_as_model_unknown(engine):
    night = T0 + timedelta(hours=20)  # 22:00 UTC: off-peak
    fold(engine, [record("balance-changed", balance("old", night, "80", "80"))])
    (row,) = rows(engine, usage_hourly)
    assert row["model"] == "unknown" and row["credits"] == 80 and row["credits_offpeak"] == 80
    assert rows(engine, fleet_usage_hourly)[0]["cluster"] == "unknown"


def test_decimals_are_exact_in_sqlite_also_summed(engine):
    charges = [record("balance-changed", balance(f"c{i}", T0, str(Decimal("0.000001") * (i + 1)), "0.000001",
                                                 usage=usage_object())) for i in range(3)]
    charges.append(record("balance-changed", balance("big", T0, "983999999999.999999", "983999999999.999996",
                                                     usage=usage_object(model="other"))))
    fold(engine, charges)
    with engine.connect() as connection:
        total = connection.execute(select(func.sum(usage_hourly.c.credits))).scalar_one()
    assert total == Decimal("983999999999.999999")
    with pytest.raises(ValueError):
        to_micro("0.0000001")


def test_redelivered_records_and_facts_change_nothing(engine):
    batch = [record("balance-changed", balance("b1", T0, "10", "10", usage=usage_object())),
             record("quota-exhausted", quota("q1", "quota.exhausted", T0, "10")),
             record("rejected", rejected("unknown_model", "u9", 4))]
    fold(engine, batch)
    with engine.connect() as connection:
        before = dump(connection)
    again = fold(engine, batch)  # the same offsets: below the stored ones
    assert again.stale == 3 and not again.folded
    moved = [record(r.kind, None, offset=100 + i) for i, r in enumerate(batch)]
    moved = [type(r)(r.kind, r.topic, r.partition, m.offset, r.timestamp_ms, r.value, r.key)
             for r, m in zip(batch, moved)]
    redelivered = fold(engine, moved)  # the same facts at new offsets (the ledger re-sent them)
    assert redelivered.duplicates == 3
    with engine.connect() as connection:
        after = dump(connection)
    assert {k: v for k, v in after.items() if k != "projector_offsets"} == \
           {k: v for k, v in before.items() if k != "projector_offsets"}


def test_where_batches_are_cut_does_not_change_the_tables(database_url):
    reset_offsets()
    pkg = package(limit="100")
    records = [record("balance-changed", balance("open", T0, "0", cause_type="plan.purchased", pkg=pkg,
                                                 amount="6.6", discount="first_purchase"), partition=1)]
    for i in range(1, 12):
        records.append(record("balance-changed", balance(f"u{i}", T0 + timedelta(minutes=37 * i), str(10 * i), "10",
                                                         pkg=pkg, usage=usage_object(miss=i)), partition=1))
    records += [record("rejected", rejected("unknown_model", f"bad{i}", i), partition=i % 2) for i in range(5)]
    records += [record("quota-status", status("alice", str(100 - i), str(i)), partition=1) for i in range(4)]
    records.append(record("quota-exhausted", quota("qe", "quota.exhausted", T0 + timedelta(hours=7), "100", pkg=pkg)))
    records += scenario(count=RECENT_PER_KEY + 3)  # the usage policy's topics (policy, policy-facts) too
    dumps = []
    engine = open_engine(database_url)
    for size in (len(records), 1, 4):
        drop_schema(engine)
        create_schema(engine)
        for start in range(0, len(records), size):
            fold(engine, records[start:start + size])
        with engine.connect() as connection:
            dumps.append(dump(connection))
    engine.dispose()
    assert dumps[0] == dumps[1] == dumps[2]
    assert len(dumps[0]["alerts"]) == 3 + 2, "80, 90, 100 % and the policy warning and suspension"
    assert len(dumps[0]["policy_events"]) == 3 and len(dumps[0]["policy_violations_recent"]) == RECENT_PER_KEY


def test_package_history_keeps_what_was_paid_and_an_upgrade_closes_the_old_period(engine):
    lite = package(T0, "4100000000")
    upgraded_at = T0 + timedelta(days=2)
    pro = package(upgraded_at, "38000000000", tier="pro")
    fold(engine, [
        record("balance-changed", balance("p1", T0, "0", cause_type="plan.purchased", pkg=lite, amount="8.80",
                                          discount="first_purchase")),
        record("balance-changed", balance("u1", T0 + timedelta(hours=1), "5", "5", pkg=lite, usage=usage_object())),
        record("balance-changed", balance("p2", upgraded_at, "0", cause_type="plan.upgraded", pkg=pro,
                                          amount="48.39")),
    ])
    history = {r["tier"]: r for r in rows(engine, package_history)}
    assert history["lite"]["amount"] == Decimal("8.8") and history["lite"]["discount"] == "first_purchase"
    assert history["lite"]["valid_until"] == upgraded_at and history["lite"]["credits_used"] == 5
    assert history["pro"]["amount"] == Decimal("48.39") and history["pro"]["opened_by"] == "plan.upgraded"
    timeline = sorted(rows(engine, balance_timeline), key=lambda r: r["fact_offset"])
    assert [r["credits_remaining"] for r in timeline] == [4100000000, 4099999995, 38000000000]


def test_alerts_once_per_crossing_and_a_refresh_rearms(engine):
    pkg = package(limit="1000")
    steps = [("a", "700"), ("b", "850"), ("c", "860"), ("d", "1000"), ("e", "1100")]
    records = [record("balance-changed", balance(i, T0 + timedelta(minutes=n), used, "1", pkg=pkg,
                                                 usage=usage_object())) for n, (i, used) in enumerate(steps)]
    records.append(record("balance-changed", balance("refresh", T0 + timedelta(hours=2), "0",
                                                     cause_type="quota.refreshed", pkg=pkg)))
    records.append(record("balance-changed", balance("f", T0 + timedelta(hours=3), "950", "950", pkg=pkg,
                                                     usage=usage_object())))
    result = fold(engine, records)
    ids = [a.alert_id for a in result.alerts]
    base = "alert:alice:2026-05-01T02:00:00Z"
    assert ids == [f"{base}:80", f"{base}:90", f"{base}:100", f"{base}:80:2", f"{base}:90:2"]
    assert fold(engine, records).alerts == []  # redelivered: decided once
    stored = rows(engine, alerts)
    assert {r["alert_id"] for r in stored} == set(ids) and all(r["published_at"] is None for r in stored)
    assert next(r for r in stored if r["alert_id"] == f"{base}:100")["fact_event_id"] == "d"


def test_configurable_thresholds(engine):
    pkg = package(limit="10")
    result = fold(engine, [record("balance-changed", balance("x", T0, "10", "10", pkg=pkg, usage=usage_object()))],
                  Fold(thresholds=(50,)))
    assert [a.threshold for a in result.alerts] == [50]


def test_dead_letters_by_reason_count_and_latest(engine):
    fold(engine, [record("rejected", rejected("unknown_model", "u1", 1), timestamp_ms=1000),
                  record("rejected", rejected("unknown_model", "u2", 2), timestamp_ms=3000, partition=1),
                  record("rejected", rejected("usage_too_late", "u3", 3), timestamp_ms=2000)])
    fold(engine, [record("rejected", rejected("unknown_model", "u4", 4), timestamp_ms=2500)])
    reasons = {r["reason"]: r for r in rows(engine, dead_letter_reasons)}
    assert reasons["unknown_model"]["count"] == 3 and reasons["unknown_model"]["latest_event_id"] == "u2"
    assert reasons["usage_too_late"]["count"] == 1


def test_quota_status_keeps_the_latest_and_quota_events_are_listed(engine):
    fold(engine, [record("quota-status", status("alice", "100")), record("quota-status", status("alice", "40", "60")),
                  record("quota-status", status("bob", "1")), record("quota-status", None, key="bob"),
                  record("quota-exhausted", quota("qe", "quota.exhausted", T0, "4100000000")),
                  record("quota-exhausted", quota("qr", "quota.restored", T0 + timedelta(days=1), "0"))])
    (alice,) = rows(engine, quota_status)
    assert alice["account_id"] == "alice" and alice["credits_remaining"] == 40
    assert [r["type"] for r in sorted(rows(engine, quota_events), key=lambda r: r["at"])] == [
        "quota.exhausted", "quota.restored"]
    assert rows(engine, package_history)[0]["exhausted"] is False


def test_unusable_records_are_skipped_and_counted(engine):
    bad = record("balance-changed", {"event_id": "x"})
    result = fold(engine, [bad, record("balance-changed", balance("ok", T0, "1", "1", usage=usage_object()))])
    assert result.unusable == 1 and result.folded["balance-changed"] == 1
