"""Several workers and restarts on the real broker: routing, recovery, nothing applied twice."""
from __future__ import annotations

import shutil
from datetime import timedelta

import pytest

from tests.support import events as ev
from tests.support.kafka_io import lookup, produce, recent_utc_day, wait_for, wait_lookup
from tests.integration.test_ledger_e2e import accounts_on_every_partition

pytestmark = pytest.mark.integration


def both_running(*workers) -> bool:
    from deploy.localrun import http_get

    return all(http_get(f"{worker.url}/health")[0] == 200 for worker in workers)


async def test_two_workers_answer_for_any_account(kafka_bootstrap, namespace, start_worker):
    first = start_worker(name="w0")
    second = start_worker(name="w1", wait=False)
    second.wait_healthy()
    await wait_for(lambda: both_running(first, second), what="both workers running after the rebalance")
    day = recent_utc_day()
    accounts = accounts_on_every_partition("two", per_partition=1)
    await produce(kafka_bootstrap, namespace.topic("plans"), [ev.purchase(a, day, tier="standard") for a in accounts])
    await produce(kafka_bootstrap, namespace.topic("usage"), [ev.usage(a, day + timedelta(hours=5), miss=3) for a in accounts])
    for account_id in accounts:
        expected = await wait_lookup(first, account_id, lambda body: body["credits_used"] in ("300", "0"))
        if expected["credits_used"] == "0":  # usage sequenced before its purchase: rejected, as replay would
            continue
        status, other = lookup(second, account_id)
        assert status == 200
        assert {k: v for k, v in other.items() if k != "as_of"} == {k: v for k, v in expected.items() if k != "as_of"}
        assert other["as_of"]["log"] == expected["as_of"]["log"]


async def test_restart_keeps_every_balance_and_applies_nothing_twice(kafka_bootstrap, namespace, start_worker):
    worker = start_worker(name="w0")
    day = recent_utc_day()
    accounts = accounts_on_every_partition("restart", per_partition=1)
    await produce(kafka_bootstrap, namespace.topic("plans"), [ev.purchase(a, day) for a in accounts])
    for account_id in accounts:
        await wait_lookup(worker, account_id, lambda body: body["status"] == "active")
    first_batch = [ev.usage(a, day + timedelta(hours=2), miss=11) for a in accounts]
    await produce(kafka_bootstrap, namespace.topic("usage"), first_batch)
    before = {a: await wait_lookup(worker, a, lambda body: body["credits_used"] == "1100") for a in accounts}

    worker.stop()
    restarted = start_worker(name="w0")  # same data directory: local RocksDB plus changelog
    for account_id in accounts:
        status, body = lookup(restarted, account_id)
        assert status == 200 and body["credits_used"] == before[account_id]["credits_used"]

    # Gateways retry the first batch after the restart and send one new event each.
    await produce(kafka_bootstrap, namespace.topic("usage"), first_batch + [ev.usage(a, day + timedelta(hours=3), miss=1) for a in accounts])
    for account_id in accounts:
        await wait_lookup(restarted, account_id, lambda body: body["credits_used"] == "1200")

    restarted.stop()
    for path in restarted.data_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)  # no local state (faust's RocksDB directories): all comes back from the changelog
    recovered = start_worker(name="w0")
    for account_id in accounts:
        status, body = lookup(recovered, account_id)
        assert status == 200 and body["credits_used"] == "1200"
