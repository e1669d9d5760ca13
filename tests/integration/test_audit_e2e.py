"""`tokenplan replay --from-kafka` and `tokenplan audit` against a live worker on the real broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest

from streams.ledger.catalog import load_catalog
from tests.support import events as ev
from deploy.localrun import REPO
from tests.support.kafka_io import instant, produce, recent_utc_day, wait_lookup

pytestmark = pytest.mark.integration


def tokenplan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_replay_from_kafka_agrees_with_the_file_and_the_audit_passes(kafka_bootstrap, namespace, start_worker, tmp_path):
    worker = start_worker()
    day = recent_utc_day()
    plans = [ev.purchase("alice", day, tier="pro"), ev.purchase("bob", day), ev.refresh(day + timedelta(hours=5))]
    usage = [ev.usage("alice", day + timedelta(hours=h), model="mimo-v2.5-pro", miss=1000, output=300) for h in (1, 6, 17)]
    usage += [ev.usage("bob", day + timedelta(hours=3), miss=50), ev.usage("carol", day, miss=1)]  # carol: no package
    await produce(kafka_bootstrap, namespace.topic("plans"), plans[:2])
    for account_id in ("alice", "bob"):
        await wait_lookup(worker, account_id, lambda body: body["status"] == "active")
    await produce(kafka_bootstrap, namespace.topic("usage"), usage[:1] + usage[3:4])
    await wait_lookup(worker, "bob", lambda body: body["credits_used"] == "5000")
    await produce(kafka_bootstrap, namespace.topic("plans"), plans[2:], key=None)
    await wait_lookup(worker, "bob", lambda body: body["credits_used"] == "0")
    await produce(kafka_bootstrap, namespace.topic("usage"), usage[1:3] + usage[4:])
    as_of = instant(day + timedelta(days=1))
    await wait_lookup(worker, "alice", lambda body: body["credits_used"] != "0" and body["as_of"]["event_time"].endswith("17:00:00Z"), as_of=as_of)

    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, TOKENPLAN_TOPIC_PREFIX=namespace.topic_prefix)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(orjson.dumps(e) for e in plans[:2] + usage[:1] + usage[3:4] + plans[2:] + usage[1:3] + usage[4:]))
    from_file = json.loads(tokenplan("replay", "--events", str(events_file), "--as-of", as_of, env=env).stdout)
    replay = tokenplan("replay", "--from-kafka", "--as-of", as_of, env=env)
    assert replay.returncode == 0, replay.stderr
    from_kafka = json.loads(replay.stdout)
    assert from_kafka["accounts"] == from_file["accounts"]
    assert from_kafka["accounts"]["alice"]["credits_used"] != "0"
    assert [(r["event_id"], r["reason"]) for r in from_kafka["rejected"]] == [(r["event_id"], r["reason"]) for r in from_file["rejected"]]

    audit = tokenplan("audit", "--url", worker.url, "--as-of", as_of, env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    summary = json.loads(audit.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["different"] == 0 and summary["equal"] >= 2

    # What-if: the same log under a catalog where MiMo-V2.5-Pro output costs 1200 instead of 600.
    catalog = json.loads(load_catalog().model_dump_json())
    for version in catalog["versions"]:
        for model in version["models"]:
            if model["name"] == "MiMo-V2.5-Pro":
                model["ratio_output"] = "1200"
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    what_if = tokenplan("audit", "--url", worker.url, "--as-of", as_of, "--catalog", str(catalog_file), env=env)
    assert what_if.returncode == 0, what_if.stdout + what_if.stderr
    changes = json.loads(what_if.stdout.strip().splitlines()[-1])["what_if"]
    # Counted after the 05:00 refresh: 300 output tokens at 06:00 (x1) and at 17:00 (off-peak, x0.8).
    assert set(changes) == {"alice"}
    assert Decimal(changes["alice"]["delta"]) == 300 * 600 + 300 * 600 * Decimal("0.8")


def test_audit_cannot_run_without_a_broker(tmp_path):
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", TOKENPLAN_TOPIC_PREFIX="nowhere.")
    result = tokenplan("audit", "--url", "http://127.0.0.1:1", env=env)
    assert result.returncode == 2
    assert "tokenplan audit:" in result.stderr
