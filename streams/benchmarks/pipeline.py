"""`tokenplan bench`: the worker on the real broker, against a raw-client baseline, one report.

Sections (each repeated `rounds` times where it measures a rate; medians reported):
1. baseline: a raw aiokafka consumer reads pre-produced usage events and produces one
   small message per event (no validation, no state): the ceiling of a Python service here.
2. pipeline: the same events through a real worker (sequencer, ledger, tables,
   balance-changed), events/s from the first balance-changed record to the last; ratio.
3. stop: under a background usage load, repeatedly exhaust an account and time until the
   lookup says allowed=false and until its record is on quota-status.
4. lookup: concurrent clients against two workers, keys owned locally and routed.
5. replay: `tokenplan replay` of a file and of the ledger-log in Kafka.
Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.benchmarks.workload import generate, stamp
from streams.localrun import REPO, Namespace, WorkerProcess, http_get

PARTITIONS = 8


@dataclass
class BenchConfig:
    """Sizes of one run (`--smoke` shrinks all of them)."""

    bootstrap: str
    events: int = 50_000
    accounts: int = 1_000
    rounds: int = 3
    exhaustions: int = 100
    load_rate: int = 5_000
    #: Which sections to run (`--sections`); the Markdown report needs all of them.
    sections: tuple[str, ...] = ("pipeline", "live", "replay")
    lookup_seconds: float = 10.0
    lookup_concurrency: int = 16
    replay_events: int = 1_000_000
    work_dir: Path = Path(tempfile.gettempdir()) / "tokenplan-bench"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


def latency_summary(values_ms: list[float]) -> dict:
    return {"count": len(values_ms), "p50_ms": round(percentile(values_ms, 0.5), 2) if values_ms else None,
            "p99_ms": round(percentile(values_ms, 0.99), 2) if values_ms else None,
            "max_ms": round(max(values_ms), 2) if values_ms else None}


def recent_day() -> datetime:
    return (datetime.now(timezone.utc) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


async def produce_all(bootstrap: str, topic: str, events: list[dict]) -> float:
    """Send keyed JSON events as fast as the client can; returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024, acks=1)
    await producer.start()
    began = time.monotonic()
    try:
        batch = []
        for event in events:
            batch.append(await producer.send(topic, orjson.dumps(event), key=event["account_id"].encode()))
            if len(batch) >= 10_000:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return time.monotonic() - began


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


# ---------------------------------------------------------------- 1. baseline

async def baseline_round(config: BenchConfig, ns: Namespace, wire: list[dict], round_index: int) -> float:
    """Raw aiokafka: consume every pre-produced event, produce one small message each; events/s."""
    source, sink = ns.topic(f"baseline-in-{round_index}"), ns.topic(f"baseline-out-{round_index}")
    await create_topics(config.bootstrap, [source, sink])
    await produce_all(config.bootstrap, source, wire)
    consumer = AIOKafkaConsumer(source, bootstrap_servers=config.bootstrap, group_id=f"{ns.name}-baseline-{round_index}",
                                auto_offset_reset="earliest", max_poll_records=2000)
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, linger_ms=5, acks=1)
    await consumer.start()
    await producer.start()
    try:
        seen, first, futures = 0, None, []
        while seen < len(wire):
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    first = first or time.monotonic()
                    futures.append(await producer.send(sink, b'{"ok":1}', key=message.key))
                    seen += 1
            await consumer.commit()
        await asyncio.gather(*futures)
        return len(wire) / (time.monotonic() - first)
    finally:
        await consumer.stop()
        await producer.stop()


# ---------------------------------------------------------------- 2. pipeline

async def count_topic_records(bootstrap: str, topic: str, expected: int, timeout_s: float,
                              marker: bytes = b"") -> tuple[int, float, float]:
    """Read `topic` until `expected` records containing `marker`; (count, first and last CreateTime in s)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    count, first_ms, last_ms = 0, None, 0
    deadline = time.monotonic() + timeout_s
    try:
        while count < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for message in messages:
                    if marker not in message.value:
                        continue
                    count += 1
                    first_ms = message.timestamp if first_ms is None else min(first_ms, message.timestamp)
                    last_ms = max(last_ms, message.timestamp)
    finally:
        await consumer.stop()
    return count, (first_ms or 0) / 1000, last_ms / 1000


async def pipeline_round(config: BenchConfig, workload, round_index: int) -> dict:
    """The worker consumes a backlog of usage; rate from first to last balance-changed record."""
    ns = Namespace()
    worker = WorkerProcess(config.bootstrap, ns, config.work_dir / ns.name).start()
    try:
        worker.wait_healthy(timeout_s=120)
        await produce_all(config.bootstrap, ns.topic("plans"), workload.plans)
        await wait_accounts_active(worker, [p["account_id"] for p in workload.plans])
        worker.stop()
        await produce_all(config.bootstrap, ns.topic("usage"), workload.wire)
        worker.start()
        worker.wait_healthy(timeout_s=120)
        expected = len(workload.usage)  # one balance-changed per distinct usage event (retries: none)
        count, first_s, last_s = await count_topic_records(config.bootstrap, ns.topic("balance-changed"), expected,
                                                           timeout_s=max(120.0, len(workload.wire) / 50),
                                                           marker=b'"cause_type":"usage"')
        return {"events": len(workload.wire), "applied": count, "seconds": round(last_s - first_s, 3),
                "events_per_s": round(len(workload.wire) / max(last_s - first_s, 1e-9), 1), "complete": count == expected}
    finally:
        worker.stop()


async def wait_accounts_active(worker: WorkerProcess, accounts: list[str], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(accounts)
    while pending and time.monotonic() < deadline:
        pending = [a for a in pending if http_get(f"{worker.url}/accounts/{a}/quota")[1].get("status") != "active"]
        if pending:
            await asyncio.sleep(0.5)
    if pending:
        raise RuntimeError(f"{len(pending)} accounts not active after {timeout_s}s; worker log: {worker.log_tail()}")


# ---------------------------------------------------------------- 3. stop-service latency

LOAD_SCRIPT = """
import asyncio, sys, time, orjson
from aiokafka import AIOKafkaProducer
bootstrap, topic, rate, seconds, prefix, accounts, day = sys.argv[1:8]
rate, seconds, accounts = int(rate), float(seconds), int(accounts)
async def main():
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    began, sent, tick, reported = time.monotonic(), 0, 0.01, 0
    while time.monotonic() - began < seconds:
        if time.monotonic() - reported >= 0.5:
            print(sent, flush=True)
            reported = time.monotonic()
        due = int((time.monotonic() - began) * rate)
        while sent < due:
            account = f"{prefix}{sent % accounts}"
            event = {"type": "usage", "event_id": f"bg-{prefix}{sent}", "occurred_at": day, "account_id": account,
                     "model": "mimo-v2.5", "input_cache_hit_tokens": 10, "input_cache_miss_tokens": 10,
                     "output_tokens": 10, "key_id": "k", "cluster": "cn", "protocol": "openai"}
            await producer.send(topic, orjson.dumps(event), key=account.encode())
            sent += 1
        await asyncio.sleep(tick)
    await producer.stop()
    print(sent)
asyncio.run(main())
"""


#: Clients of the second, lighter lookup measurement (the first uses `lookup_concurrency`).
LIGHT_LOOKUP_CONCURRENCY = 4
#: The second stop-service load, as a fraction of the measured pipeline rate.
SUSTAINED_FRACTION = 0.25
#: Consecutive exhaustions not seen within the timeout before a load is declared unsustainable.
STOP_TIMEOUTS_MAX = 3


async def stop_latency(config: BenchConfig, worker: WorkerProcess, ns: Namespace, background: list[str],
                       load_rate: int, label: str) -> dict:
    """Exhaust `exhaustions` lite accounts one by one under a background load; time lookup and status.

    Stops early after STOP_TIMEOUTS_MAX consecutive timeouts: the worker cannot keep up
    with that load, and every later measurement would only time the backlog.
    """
    slug = label.replace(" ", "-")
    victims = [f"victim-{slug}-{index}" for index in range(config.exhaustions)]
    day = recent_day()
    await produce_all(config.bootstrap, ns.topic("plans"), [
        {"type": "plan.purchased", "event_id": f"buy-{v}", "occurred_at": stamp(day), "account_id": v, "tier": "lite",
         "period": "monthly", "currency": "USD", "auto_renew": False} for v in victims])
    await wait_accounts_active(worker, victims)
    status_seen: dict[str, float] = {}
    status_consumer = AIOKafkaConsumer(ns.topic("quota-status"), bootstrap_servers=config.bootstrap, group_id=None,
                                       auto_offset_reset="latest")
    await status_consumer.start()
    watcher = asyncio.create_task(watch_status(status_consumer, status_seen))
    seconds = config.exhaustions * 1.5 + 30
    load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, config.bootstrap, ns.topic("usage"), str(load_rate),
                             str(seconds), "bg-", str(len(background)), stamp(day + timedelta(hours=2))],
                            stdout=subprocess.PIPE, text=True)
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, linger_ms=0, acks=1)
    await producer.start()
    lookup_ms, status_ms, timeouts, streak = [], [], 0, 0
    consumed_before = consumed(worker, ns)
    began = time.monotonic()
    try:
        await asyncio.sleep(3.0)  # let the load reach its rate
        for victim in victims:
            event = {"type": "usage", "event_id": f"kill-{victim}", "occurred_at": stamp(datetime.now(timezone.utc)),
                     "account_id": victim, "model": "mimo-v2-pro", "input_cache_hit_tokens": 0,
                     "input_cache_miss_tokens": 10_000_000, "output_tokens": 0, "key_id": "k", "cluster": "cn",
                     "protocol": "openai"}
            sent_at = time.monotonic()
            await producer.send_and_wait(ns.topic("usage"), orjson.dumps(event), key=victim.encode())
            denied_at = await poll_until_denied(worker, victim, timeout_s=10.0)
            if denied_at is None:
                timeouts += 1
                streak += 1
                if streak >= STOP_TIMEOUTS_MAX:
                    break
                continue
            streak = 0
            lookup_ms.append((denied_at - sent_at) * 1000)
            for _ in range(200):
                if victim in status_seen:
                    status_ms.append((status_seen[victim] - sent_at) * 1000)
                    break
                await asyncio.sleep(0.01)
    finally:
        elapsed = time.monotonic() - began
        consumed_after = consumed(worker, ns)
        load.terminate()
        lines = load.communicate(timeout=30)[0].split()
        sent_load = lines[-1] if lines else "0"
        watcher.cancel()
        await status_consumer.stop()
        await producer.stop()
    return {"background_rate_target": load_rate, "background_events_sent": int(sent_load or 0),
            "sustained": streak < STOP_TIMEOUTS_MAX,
            "worker_events_per_s_during": round((consumed_after - consumed_before) / elapsed, 1),
            "lookup": latency_summary(lookup_ms), "status_topic": latency_summary(status_ms), "timeouts": timeouts}


async def wait_caught_up(worker: WorkerProcess, ns: Namespace, timeout_s: float = 300.0) -> None:
    """Until the worker's ledger-log count stops moving for 2 s (its backlog is applied)."""
    deadline, last, still_since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now_consumed = consumed(worker, ns)
        if now_consumed != last:
            last, still_since = now_consumed, time.monotonic()
        elif time.monotonic() - still_since >= 2.0:
            return
        await asyncio.sleep(0.25)


def consumed(worker: WorkerProcess, ns: Namespace) -> int:
    return http_get(f"{worker.url}/health")[1].get("consumed", {}).get(ns.topic("ledger-log"), 0)


async def watch_status(consumer: AIOKafkaConsumer, seen: dict[str, float]) -> None:
    async for message in consumer:
        if message.key and b'"allowed":false' in message.value:
            seen.setdefault(message.key.decode(), time.monotonic())


async def poll_until_denied(worker: WorkerProcess, account_id: str, timeout_s: float) -> float | None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{worker.url}/accounts/{account_id}/quota") as response:
                if response.status == 200 and (await response.json()).get("allowed") is False:
                    return time.monotonic()
            await asyncio.sleep(0.002)
    return None


# ---------------------------------------------------------------- 4. lookup

async def lookup_latency(config: BenchConfig, workers: list[WorkerProcess], accounts: list[str],
                         concurrency: int) -> dict:
    """Concurrent clients hitting the first worker; split by who served (local vs routed)."""
    import aiohttp

    target = workers[0]
    local, routed = [], []
    deadline = time.monotonic() + config.lookup_seconds
    rng = random.Random(3)

    async def client(session) -> None:
        while time.monotonic() < deadline:
            account = rng.choice(accounts)
            began = time.perf_counter()
            async with session.get(f"{target.url}/accounts/{account}/quota") as response:
                body = await response.json()
            elapsed_ms = (time.perf_counter() - began) * 1000
            if response.status == 200:
                (local if body.get("served_by") == target.url else routed).append(elapsed_ms)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    total = len(local) + len(routed)
    return {"concurrency": concurrency, "seconds": config.lookup_seconds,
            "requests_per_s": round(total / config.lookup_seconds, 1),
            "local": latency_summary(local), "routed": latency_summary(routed)}


# ---------------------------------------------------------------- 5. replay

def replay_file(config: BenchConfig) -> dict:
    from streams.benchmarks import replay as replay_bench

    path = str(config.work_dir / "replay-events.jsonl")
    replay_bench.generate(path, config.replay_events, accounts=2_000)
    _ledger, lines, seconds = replay_bench.replay(path)
    return {"events": lines, "seconds": round(seconds, 2), "events_per_s": round(lines / seconds, 1), "path": path}


async def replay_kafka(config: BenchConfig, path: str) -> dict:
    from streams.config import Settings
    from streams.kafka_replay import replay_ledger_log
    from streams.ledger import load_catalog

    ns = Namespace()
    topic = ns.topic("ledger-log")
    await create_topics(config.bootstrap, [topic])
    with open(path, "rb") as handle:
        events = [orjson.loads(line) for line in handle]
    await produce_all(config.bootstrap, topic, events)
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": config.bootstrap, "TOKENPLAN_TOPIC_PREFIX": ns.topic_prefix})
    began = time.monotonic()
    await replay_ledger_log(settings, load_catalog(), settings.limits, datetime.now(timezone.utc))
    seconds = time.monotonic() - began
    return {"events": len(events), "seconds": round(seconds, 2), "events_per_s": round(len(events) / seconds, 1)}


# ---------------------------------------------------------------- the run

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory_kb = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    pom = (REPO / "deploy" / "pom.xml").read_text()
    kafka = pom.split("<kafka.version>")[1].split("<")[0]
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "kafka": kafka}


async def run_all(config: BenchConfig, log) -> dict:
    config.work_dir.mkdir(parents=True, exist_ok=True)
    accounts = [f"acc{index}" for index in range(config.accounts)]
    workload = generate(config.events, accounts, recent_day(), seed=11, id_prefix="bench")
    report: dict = {"machine": machine(), "config": {k: str(v) for k, v in vars(config).items() if k != "bootstrap"},
                    "started_at": stamp(datetime.now(timezone.utc))}
    ns = Namespace()
    baseline = []
    for round_index in range(config.rounds):
        baseline.append(await baseline_round(config, ns, workload.wire, round_index))
        log(f"baseline round {round_index + 1}: {baseline[-1]:,.0f} events/s")
    report["baseline"] = {"rounds_events_per_s": [round(x, 1) for x in baseline],
                          "events_per_s": round(statistics.median(baseline), 1)}
    if "pipeline" in config.sections:
        pipeline = []
        for round_index in range(config.rounds):
            pipeline.append(await pipeline_round(config, workload, round_index))
            log(f"pipeline round {round_index + 1}: {pipeline[-1]['events_per_s']:,.0f} events/s")
        median_pipeline = statistics.median(p["events_per_s"] for p in pipeline)
        report["pipeline"] = {"rounds": pipeline, "events_per_s": median_pipeline,
                              "ratio_to_baseline": round(median_pipeline / report["baseline"]["events_per_s"], 3)}
        # A quarter of the pipeline rate: the pipeline's accounts have small records; the
        # background accounts' records grow to their limits, and the worker sustains
        # about half the pipeline rate with those (docs/performance.md).
        sustainable = max(50, int(median_pipeline * SUSTAINED_FRACTION))
    else:
        sustainable = max(50, config.load_rate // 20)
    if "live" in config.sections:
        report.update(await live_sections(config, log, sustainable))
    if "replay" in config.sections:
        report["replay_file"] = replay_file(config)
        log(f"replay from file: {report['replay_file']['events_per_s']:,.0f} events/s")
        report["replay_kafka"] = await replay_kafka(config, report["replay_file"].pop("path"))
        log(f"replay from Kafka: {report['replay_kafka']['events_per_s']:,.0f} events/s")
    report["finished_at"] = stamp(datetime.now(timezone.utc))
    return report


async def start_loaded_worker(config: BenchConfig, name: str) -> tuple[WorkerProcess, Namespace, list[str]]:
    """A worker in a fresh namespace whose background accounts have bought a max plan."""
    ns = Namespace()
    worker = WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-{name}").start()
    worker.wait_healthy(timeout_s=120)
    background = [f"bg-{index}" for index in range(max(config.accounts, 100))]
    await produce_all(config.bootstrap, ns.topic("plans"), [
        {"type": "plan.purchased", "event_id": f"buy-{a}", "occurred_at": stamp(recent_day()), "account_id": a,
         "tier": "max", "period": "monthly", "currency": "USD", "auto_renew": False} for a in background])
    await wait_accounts_active(worker, background)
    return worker, ns, background


async def live_sections(config: BenchConfig, log, sustainable_rate: int) -> dict:
    """Stop-service latency at the target load and at a sustainable one (a fresh worker
    each: a saturated worker's backlog would delay the next section), then lookups with a
    second worker joined."""
    stop, workers = {}, []
    try:
        for label, rate in (("target", config.load_rate), ("a quarter of the pipeline rate", sustainable_rate)):
            worker, ns, background = await start_loaded_worker(config, label)
            workers.append(worker)
            stop[label] = await stop_latency(config, worker, ns, background, rate, label)
            log(f"stop-service at {rate}/s: lookup p50 {stop[label]['lookup']['p50_ms']} ms "
                f"p99 {stop[label]['lookup']['p99_ms']} ms, status topic p99 {stop[label]['status_topic']['p99_ms']} ms, "
                f"{stop[label]['timeouts']} timeouts")
            if label == "target":
                worker.stop()
        second = WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-second").start()
        workers.append(second)
        second.wait_healthy(timeout_s=120)
        await asyncio.sleep(3.0)
        worker.wait_healthy(timeout_s=120)
        await wait_caught_up(worker, ns)  # lookups measured on an idle worker, not behind a backlog
        lookup = await lookup_latency(config, [worker, second], background, config.lookup_concurrency)
        log(f"lookup: local p99 {lookup['local']['p99_ms']} ms, routed p99 {lookup['routed']['p99_ms']} ms, "
            f"{lookup['requests_per_s']:,.0f} req/s")
        light = await lookup_latency(config, [worker, second], background, LIGHT_LOOKUP_CONCURRENCY)
        log(f"lookup, {LIGHT_LOOKUP_CONCURRENCY} clients: local p99 {light['local']['p99_ms']} ms")
        return {"stop_service": stop, "lookup": lookup, "lookup_light": light}
    finally:
        for worker in workers:
            worker.stop()
