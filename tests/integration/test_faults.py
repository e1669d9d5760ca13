"""Fault injection on the real broker: kill -9, broker restarts, rebalances.

Each test draws its random moments from a seed it prints (set TOKENPLAN_FAULT_SEED to
replay a failure), bounds its own time, and ends with the same proof: every account's
live balance equals both the balance the produced events must give (each distinct
event once, none lost) and a replay of the ledger-log from Kafka. The load
(tests/support/load.py) includes retries from far back: events of a few busy accounts
sent again after at least 600 other events of the same account.

Environment:
* TOKENPLAN_FAULT_SEED=N: run each test with seed N (once), to replay a failure.
* TOKENPLAN_FAULT_RUNS=K (default 1): soak mode, the kill -9 test runs K times, each with
  a fresh seed and its own namespace (topics, worker data), e.g.
  `TOKENPLAN_FAULT_RUNS=10 pytest -m integration tests/integration/test_faults.py -k kill`.
  Ignored when TOKENPLAN_FAULT_SEED is set.
* TOKENPLAN_FAULT_EVENTS: usage events of the kill -9 test (default 20,000).
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from datetime import timedelta

import pytest

from schemas.events import parse_instant
from streams.audit.compare import VIEW_FIELDS, compare
from streams.config import Settings
from streams.audit.kafka_replay import replay_ledger_log
from streams.ledger import load_catalog
from deploy.localrun import Namespace, http_get
from tests.support.kafka_io import instant, lookup, produce, recent_utc_day, wait_lookup
from tests.support.load import Load
from tests.integration.test_ledger_e2e import accounts_on_every_partition

pytestmark = pytest.mark.integration

#: Usage events of the kill -9 test: tens of thousands, within the 10-minute budget of make test.
LOAD_EVENTS = int(os.environ.get("TOKENPLAN_FAULT_EVENTS", "20000"))
#: The broker-restart and rebalance tests prove the same equality with half the load.
LOAD_EVENTS_SHORT = LOAD_EVENTS // 2
#: Pause between batches of 500 published events in the kill test (~20 s of publishing).
PUBLISH_PAUSE_S = 0.5
#: How long the workers get to catch up after the load and the faults.
CATCH_UP_TIMEOUT_S = 180.0
#: Soak mode: how many times the kill -9 test runs, each with a fresh seed (one run
#: when a seed is given to replay).
FAULT_RUNS = 1 if os.environ.get("TOKENPLAN_FAULT_SEED") else int(os.environ.get("TOKENPLAN_FAULT_RUNS", "1"))


def fault_seed() -> int:
    seed = int(os.environ.get("TOKENPLAN_FAULT_SEED", random.SystemRandom().randrange(2**31)))
    print(f"\nfault seed: {seed} (replay with TOKENPLAN_FAULT_SEED={seed})", flush=True)
    return seed


def make_load(seed: int, events: int = LOAD_EVENTS) -> Load:
    return Load(seed, accounts_on_every_partition(f"load{seed}", per_partition=25), recent_utc_day(), events)


async def buy_all(kafka_bootstrap: str, ns: Namespace, worker, load: Load) -> None:
    await produce(kafka_bootstrap, ns.topic("plans"), load.plans)
    for event in load.plans:
        await wait_lookup(worker, event["account_id"], lambda body: body["status"] == "active")


async def assert_balances_proven(kafka_bootstrap: str, ns: Namespace, worker, load: Load, seed: int) -> None:
    """Live == what the events must give == replay of the ledger-log, for every account."""
    as_of = instant(load.day + timedelta(days=1))
    expected = load.expected(as_of)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    pending = dict(expected)
    live: dict[str, dict] = {}
    while pending and time.monotonic() < deadline:
        for account_id in list(pending):
            try:
                status, body = lookup(worker, account_id, as_of)
            except OSError as error:  # a dropped connection is not a balance: ask again, within the deadline
                print(f"  lookup of {account_id}: {type(error).__name__}; retrying", flush=True)
                break
            if status == 200 and all(body[name] == expected[account_id][name] for name in VIEW_FIELDS):
                live[account_id] = body
                del pending[account_id]
        if pending:
            await asyncio.sleep(1.0)
    print(f"  caught up with the produced events in {time.monotonic() - deadline + CATCH_UP_TIMEOUT_S:.1f}s", flush=True)
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOKENPLAN_TOPIC_PREFIX": ns.topic_prefix})
    replay = await replay_ledger_log(settings, load_catalog(), settings.limits, parse_instant(as_of))
    replayed = replay.result(parse_instant(as_of))["accounts"]
    if pending:  # the replay says which hop lost it: the ledger-log (sequencer) or the live state (ledger)
        differences = []
        for account_id in list(pending)[:5]:
            _status, body = lookup(worker, account_id, as_of)
            live_used, expected_used = body.get("credits_used"), expected[account_id]["credits_used"]
            excess = int(live_used) - int(expected_used) if live_used is not None else "?"
            differences.append(f"{account_id}{' (busy)' if account_id in load.busy else ''}: live used {live_used} "
                               f"expected {expected_used} (live - expected {excess}), "
                               f"ledger-log replay {replayed.get(account_id, {}).get('credits_used')}")
        pytest.fail(f"seed {seed}: {len(pending)} accounts differ from the produced events after "
                    f"{CATCH_UP_TIMEOUT_S}s, e.g. " + "; ".join(differences))
    report = compare({a: replayed[a] for a in expected}, live, replay.result(parse_instant(as_of))["log_end_offsets"])
    assert report.ok, f"seed {seed}: live differs from the ledger-log replay: {[d.to_dict() for d in report.diffs[:3]]}"
    assert report.equal == len(expected)


@pytest.mark.parametrize("run", range(1, FAULT_RUNS + 1), ids=lambda run: f"run{run}")
async def test_kill_9_at_random_moments_loses_nothing_and_counts_nothing_twice(kafka_bootstrap, namespace, start_worker, run):
    print(f"\nkill -9 run {run} of {FAULT_RUNS}", end="", flush=True)
    seed = fault_seed()
    rng = random.Random(seed)
    load = make_load(seed)
    worker = start_worker(name="w0")
    await buy_all(kafka_bootstrap, namespace, worker, load)
    # Spread over ~20 s, so the kills land while events still arrive (the worker applies
    # a burst of 20,000 in a few seconds).
    publishing = asyncio.create_task(load.publish(kafka_bootstrap, namespace.topic("usage"), pause_s=PUBLISH_PAUSE_S))
    kills = 0
    while kills < 3 or not publishing.done():
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        worker.stop(sig=signal.SIGKILL)
        kills += 1
        print(f"kill -9 #{kills} after {load.sent} events sent", flush=True)
        worker.start()
        started = time.monotonic()
        await asyncio.to_thread(worker.wait_healthy)  # the gateways keep publishing meanwhile
        print(f"  restarted and healthy in {time.monotonic() - started:.1f}s", flush=True)
        if kills >= 6:
            break
    await publishing
    await assert_balances_proven(kafka_bootstrap, namespace, worker, load, seed)


async def test_broker_restart_mid_stream(namespace, start_worker, tmp_path):
    """A broker of our own (another port), stopped and started again under load."""
    from deploy.localrun import LOCAL_KAFKA, WorkerProcess, free_port
    import subprocess

    seed = fault_seed()
    port = free_port()
    env = dict(os.environ, TOKENPLAN_KAFKA_PORT=str(port), TOKENPLAN_KAFKA_CONTROLLER_PORT=str(free_port()))
    subprocess.run([str(LOCAL_KAFKA), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    worker = WorkerProcess(bootstrap, namespace, tmp_path / "w0").start()
    try:
        worker.wait_healthy()
        load = make_load(seed, LOAD_EVENTS_SHORT)
        await buy_all(bootstrap, namespace, worker, load)
        publishing = asyncio.create_task(load.publish(bootstrap, namespace.topic("usage")))
        await asyncio.sleep(random.Random(seed).uniform(1.0, 3.0))
        print(f"stopping the broker after {load.sent} events sent", flush=True)
        subprocess.run([str(LOCAL_KAFKA), "stop", "--keep-data"], check=True, env=env)
        await asyncio.sleep(2.0)
        subprocess.run([str(LOCAL_KAFKA), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
        await publishing
        if worker.process.poll() is not None:  # the worker may give up while the broker is away
            print("worker exited during the broker outage; restarting it", flush=True)
            worker.start()
        worker.wait_healthy(timeout_s=120)
        await assert_balances_proven(bootstrap, namespace, worker, load, seed)
    finally:
        worker.stop()
        subprocess.run([str(LOCAL_KAFKA), "stop"], check=False, env=env)


async def test_rebalance_add_a_worker_then_remove_the_first(kafka_bootstrap, namespace, start_worker):
    seed = fault_seed()
    load = make_load(seed, LOAD_EVENTS_SHORT)
    first = start_worker(name="w0")
    await buy_all(kafka_bootstrap, namespace, first, load)
    probe_account = load.accounts[0]
    answers: list[tuple[str, int]] = []
    stop_probe = threading.Event()

    def probe() -> None:  # lookups keep answering: 200, or 503 only inside a rebalance
        while not stop_probe.is_set():
            for name, worker in (("w0", first), ("w1", second)):
                try:
                    answers.append((name, http_get(f"{worker.url}/accounts/{probe_account}/quota", timeout_s=5)[0]))
                except OSError:
                    answers.append((name, -1))  # the stopped worker's port is closed: not asked again below
            time.sleep(0.05)

    publishing = asyncio.create_task(load.publish(kafka_bootstrap, namespace.topic("usage")))
    await asyncio.sleep(1.0)
    second = start_worker(name="w1", wait=False)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    second.wait_healthy(timeout_s=120)
    await asyncio.sleep(2.0)
    first.stop()
    await publishing
    await assert_balances_proven(kafka_bootstrap, namespace, second, load, seed)
    stop_probe.set()
    thread.join(timeout=10)
    statuses = {status for _name, status in answers if status != -1}
    assert statuses <= {200, 503}, f"seed {seed}: lookups answered {statuses}"
    assert 200 in statuses
