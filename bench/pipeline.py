"""`tokenplan bench`: the worker on the real broker, against a raw-client baseline, one report.

Sections (each repeated `rounds` times where it measures a rate; medians reported):
1. baseline: a raw aiokafka consumer reads pre-produced usage events and produces one
   small message per event (no validation, no state): the ceiling of a Python service here.
2. pipeline: the same events through a real worker (sequencer, ledger, tables,
   balance-changed), events/s from the first balance-changed record to the last; ratio.
   Also the bytes the worker wrote to its state changelog topics per usage event applied
   (the broker's partition sizes before and after the usage phase: `ChangelogMeter`).
3. stop: under a background usage load, repeatedly exhaust an account and time until the
   lookup says allowed=false and until its record is on quota-status (the second load:
   half the pipeline rate, on busy accounts brought to a steady-state record size first).
4. lookup: concurrent clients against two workers, keys owned locally and routed.
5. replay: `tokenplan replay` of a file and of the ledger-log in Kafka.
6. gateway (bench/gateway.py): the quota cache's decision in process, the gateway's
   added latency over upstream-sim, and exhaust -> the gateway's 429 as a client sees it.
7. projections (bench/projections.py): the projector's records/s into SQLite (and
   PostgreSQL when deploy/local-postgres starts) against the pipeline's rate, the lag
   from a fact to its row under a steady load, and the dashboard API over a month of data.
8. soak (not in the default sections: 10+ minutes): many max-plan accounts, a steady
   background load, the worker's RSS sampled from start to end, and whether it kept up.
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

from bench.cpu import cpu_seconds, faust_pid, machine_busy_s, process_tree, wait_machine_idle
from bench.workload import generate, stamp
from deploy.localrun import REPO, Namespace, WorkerProcess, http_get

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
    #: Which sections to run (`--sections`); the Markdown report needs pipeline, live
    #: and replay (gateway, projections and soak are optional: their rows appear when they ran).
    sections: tuple[str, ...] = ("pipeline", "live", "replay", "gateway", "projections")
    lookup_seconds: float = 10.0
    lookup_concurrency: int = 16
    #: Lookups start once the machine rests (bench.cpu.wait_machine_idle: under 0.4 busy
    #: cores for 2 s), waiting at most this long after the half-rate load's compactions.
    lookup_idle_wait_seconds: float = 120.0
    replay_events: int = 1_000_000
    #: Changelog bytes: "auto" asks the broker (DescribeLogDirs) and falls back to
    #: consuming the changelog records; "consume" always consumes.
    changelog_method: str = "auto"
    #: Stop-service at half the pipeline rate: the load goes to `busy_accounts` background
    #: accounts, each sent `steady_events_per_account` usage events first (waited for at
    #: most `steady_wait_seconds`), so their records have grown to a steady-state size.
    busy_accounts: int = 100
    steady_events_per_account: int = 300
    steady_wait_seconds: float = 300.0
    #: Soak: accounts that buy a max plan, load duration, RSS sampling interval, and the
    #: load rate (None: SOAK_FRACTION of the rate measured by `soak_capacity`).
    soak_seconds: float = 600.0
    #: Soak: usage events of the backlog that measures the worker's rate over the soak's
    #: accounts (the load is SOAK_FRACTION of it; unused with --soak-rate). It also warms
    #: the worker: every account is charged ~10 times before the load starts.
    soak_probe_events: int = 200_000
    #: Soak: the first seconds of the load fill what is bounded (the record cache, RocksDB's
    #: shared memtables and block cache); the RSS check compares the end with the RSS then.
    soak_warmup_seconds: float = 60.0
    soak_accounts: int = 20_000
    soak_sample_seconds: float = 30.0
    soak_rate: int | None = None
    #: Gateway section (bench/gateway.py): requests in flight and requests per target
    #: (direct to upstream-sim, through the gateway), exhaustions and how many run at a
    #: time, upstream-sim's latency, and the in-process cache decision's sizes.
    gateway_concurrency: int = 100
    gateway_requests: int = 2_000
    gateway_exhaustions: int = 100
    gateway_parallel: int = 5
    gateway_latency_ms: int = 20
    gateway_cache_keys: int = 100_000
    gateway_decisions: int = 100_000
    #: Projections section (bench/projections.py): accounts and usage events loaded, the
    #: steady load of the lag measure (events/s, seconds), the dashboard's month of data
    #: (days x 24 hours x models) and requests per endpoint, and whether to try PostgreSQL.
    projections_accounts: int = 1_000
    projections_events: int = 20_000
    projections_rate: int = 500
    projections_seconds: float = 10.0
    projections_dashboard_days: int = 30
    projections_dashboard_models: int = 4
    projections_dashboard_requests: int = 500
    projections_postgres: bool = True
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
    """The worker consumes a backlog of usage; rate from first to last balance-changed record.

    The changelog bytes of the usage phase: sizes taken with the worker stopped after the
    purchases (so their writes are not counted) and again once the usage is applied and
    the changelog topics stopped growing.
    """
    ns = Namespace()
    worker = WorkerProcess(config.bootstrap, ns, config.work_dir / ns.name).start()
    try:
        worker.wait_healthy(timeout_s=120)
        await produce_all(config.bootstrap, ns.topic("plans"), workload.plans)
        await wait_accounts_active(worker, [p["account_id"] for p in workload.plans])
        worker.stop()
        async with ChangelogMeter(config.bootstrap, ns, config.changelog_method) as meter:
            before = await meter.snapshot()
            await produce_all(config.bootstrap, ns.topic("usage"), workload.wire)
            worker.start()
            worker.wait_healthy(timeout_s=120)
            expected = len(workload.usage)  # one balance-changed per distinct usage event (retries: none)
            count, first_s, last_s = await count_topic_records(config.bootstrap, ns.topic("balance-changed"), expected,
                                                               timeout_s=max(120.0, len(workload.wire) / 50),
                                                               marker=b'"cause_type":"usage"')
            after = await meter.settled()
            changelog = await meter.delta(before, after, usage_events=count)
        return {"events": len(workload.wire), "applied": count, "seconds": round(last_s - first_s, 3),
                "events_per_s": round(len(workload.wire) / max(last_s - first_s, 1e-9), 1), "complete": count == expected,
                "changelog": changelog}
    finally:
        worker.stop()


# ---------------------------------------------------------------- 2b. changelog bytes

class DescribeLogDirsResponse_v0(Response):
    API_KEY = 35
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(
            ("error_code", Int16),
            ("log_dir", String("utf-8")),
            ("topics", Array(
                ("name", String("utf-8")),
                ("partitions", Array(
                    ("partition_index", Int32),
                    ("partition_size", Int64),
                    ("offset_lag", Int64),
                    ("is_future_key", Boolean))))))))


class DescribeLogDirsResponse_v1(Response):
    API_KEY = 35
    API_VERSION = 1
    SCHEMA = DescribeLogDirsResponse_v0.SCHEMA


class DescribeLogDirsRequest_v0(RequestStruct):
    API_KEY = 35
    API_VERSION = 0
    RESPONSE_TYPE = DescribeLogDirsResponse_v0
    SCHEMA = Schema(("topics", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))))


class DescribeLogDirsRequest_v1(RequestStruct):
    """v1: v0's layout (Kafka 4 dropped v0); the non-flexible versions aiokafka can encode."""

    API_KEY = 35
    API_VERSION = 1
    RESPONSE_TYPE = DescribeLogDirsResponse_v1
    SCHEMA = DescribeLogDirsRequest_v0.SCHEMA


class DescribeLogDirsRequest(Request[DescribeLogDirsRequest_v0 | DescribeLogDirsRequest_v1]):
    """The broker's on-disk size of each replica (aiokafka 0.14's admin client has no
    describe_log_dirs; this is the Kafka protocol request it would send)."""

    API_KEY = 35

    def __init__(self, topics: list[tuple[str, list[int]]]) -> None:
        self._topics = topics

    def build(self, request_struct_class):
        return request_struct_class(self._topics)


#: The consuming fallback's estimate of what a record costs on the broker beyond its key,
#: value and headers: ~10 B of record framing (length, attributes, timestamp and offset
#: deltas, key/value lengths as varints) plus a share of the 61-byte batch header (the
#: worker's producer lingers 1 ms, so its batches hold few records). Smoke runs measured
#: 33 B/record with one changelog write per event and 9 B with the ledger's batched writes
#: (`broker_overhead_bytes_per_record`, reported when both figures exist).
RECORD_OVERHEAD_BYTES = 20
#: How long the changelog must stay unchanged before the "after" sizes are taken.
CHANGELOG_STILL_S = 2.0


@dataclass
class ChangelogSnapshot:
    #: (topic, partition) -> log end offset.
    end_offsets: dict[tuple[str, int], int]
    #: (topic, partition) -> the broker's size of the partition in bytes; None when the
    #: broker could not be asked (the fallback consumes the records instead).
    sizes: dict[tuple[str, int], int] | None


class ChangelogMeter:
    """Bytes written to a namespace's state changelog topics (`{app_id}-*-changelog`).

    Preferred: the broker's own figure, the sum of the changelog partitions' sizes from a
    DescribeLogDirs request to every broker (each partition counted once: its largest
    replica), after minus before. Fallback (or `method="consume"`): consume the records
    between the two snapshots' end offsets and sum len(key) + len(value) + headers +
    RECORD_OVERHEAD_BYTES. The records are consumed in both cases when time allows, for
    the payload figure. The topics are listed by prefix and suffix, so new tables count.
    Compaction could only shrink the "after" sizes if a segment rolled during the phase
    (deploy/server.properties: 64 MiB segments; a round writes far less per partition).
    """

    def __init__(self, bootstrap: str, ns: Namespace, method: str = "auto") -> None:
        self.bootstrap, self.ns, self.method = bootstrap, ns, method
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        self.broker_error: str | None = None

    async def __aenter__(self) -> "ChangelogMeter":
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self) -> list[tuple[str, int]]:
        prefix = f"{self.ns.app_id}-"
        names = sorted(t for t in await self.admin.list_topics() if t.startswith(prefix) and t.endswith("-changelog"))
        if not names:
            return []
        return sorted((d["topic"], p["partition"]) for d in await self.admin.describe_topics(names)
                      if d.get("error_code", 0) == 0 for p in d["partitions"])

    async def broker_sizes(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int] | None:
        if self.method != "auto" or self.broker_error is not None:
            return None
        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        sizes: dict[tuple[str, int], int] = {}
        try:
            for broker in self.admin._client.cluster.brokers():
                response = await self.admin._send_request_to_node(broker.nodeId,
                                                                  DescribeLogDirsRequest(list(by_topic.items())))
                for result in response.to_object()["results"]:
                    if result["error_code"] != 0:
                        raise KafkaError(f"DescribeLogDirs error {result['error_code']} on {result['log_dir']}")
                    for topic in result["topics"]:
                        for p in topic["partitions"]:
                            if not p["is_future_key"]:
                                key = (topic["name"], p["partition_index"])
                                sizes[key] = max(sizes.get(key, 0), p["partition_size"])
        except (IncompatibleBrokerVersion, NotImplementedError, KafkaError, asyncio.TimeoutError) as error:
            self.broker_error = f"{type(error).__name__}: {error}"
            return None
        return {key: sizes.get(key, 0) for key in partitions}

    async def snapshot(self) -> ChangelogSnapshot:
        partitions = await self.partitions()
        offsets = await self.consumer.end_offsets([TopicPartition(t, p) for t, p in partitions]) if partitions else {}
        return ChangelogSnapshot({(tp.topic, tp.partition): offset for tp, offset in offsets.items()},
                                 await self.broker_sizes(partitions))

    async def settled(self, timeout_s: float = 30.0) -> ChangelogSnapshot:
        """A snapshot once the end offsets stayed the same for CHANGELOG_STILL_S (the worker's
        last table writes are flushed), or at the timeout."""
        deadline = time.monotonic() + timeout_s
        last = await self.snapshot()
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = await self.snapshot()
            if now.end_offsets != last.end_offsets:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= CHANGELOG_STILL_S:
                return now
        return last

    async def consume_range(self, before: ChangelogSnapshot, after: ChangelogSnapshot,
                            timeout_s: float) -> tuple[int, int, bool]:
        """(records, bytes of key + value + headers, complete) between the two snapshots."""
        ranges = {TopicPartition(t, p): (before.end_offsets.get((t, p), 0), end)
                  for (t, p), end in after.end_offsets.items() if end > before.end_offsets.get((t, p), 0)}
        if not ranges:
            return 0, 0, True
        self.consumer.assign(list(ranges))
        for tp, (start, _end) in ranges.items():
            self.consumer.seek(tp, start)
        records = payload = 0
        pending = set(ranges)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = await self.consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                end = ranges[tp][1]
                for message in messages:
                    if message.offset >= end:
                        break
                    records += 1
                    payload += (len(message.key or b"") + len(message.value or b"")
                                + sum(len(k) + len(v or b"") for k, v in message.headers))
            for tp in list(pending):
                if await self.consumer.position(tp) >= ranges[tp][1]:
                    pending.discard(tp)
        self.consumer.unsubscribe()
        return records, payload, not pending

    async def delta(self, before: ChangelogSnapshot, after: ChangelogSnapshot, usage_events: int,
                    consume_timeout_s: float = 120.0) -> dict:
        keys = sorted(set(after.end_offsets) | set(before.end_offsets))
        appended = sum(after.end_offsets.get(k, 0) - before.end_offsets.get(k, 0) for k in keys)
        records, payload, complete = await self.consume_range(before, after, consume_timeout_s)
        per_event = lambda value: round(value / usage_events, 1) if usage_events and value is not None else None  # noqa: E731
        by_topic: dict[str, int] = {}
        if before.sizes is not None and after.sizes is not None:
            method = "broker partition sizes (DescribeLogDirs)"
            for topic, partition in keys:
                short = topic[len(self.ns.app_id) + 1:]
                by_topic[short] = (by_topic.get(short, 0) + after.sizes.get((topic, partition), 0)
                                   - before.sizes.get((topic, partition), 0))
            total = sum(by_topic.values())
        else:
            method = f"consumed records: key + value + headers + {RECORD_OVERHEAD_BYTES} B per record (estimate)"
            total = payload + RECORD_OVERHEAD_BYTES * records if complete else None
        result = {"method": method, "topics": sorted({t[len(self.ns.app_id) + 1:] for t, _p in keys}),
                  "usage_events": usage_events, "bytes": total, "records": appended,
                  "bytes_per_usage_event": per_event(total), "records_per_usage_event": per_event(appended),
                  "payload_bytes": payload if complete else None,
                  "payload_bytes_per_usage_event": per_event(payload if complete else None)}
        if by_topic:
            result["bytes_by_topic"] = by_topic
        if by_topic and complete and records:
            result["broker_overhead_bytes_per_record"] = round((total - payload) / records, 1)
        if self.broker_error:
            result["broker_error"] = self.broker_error
        return result


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

#: The background load: gateways on other machines, so it is written to cost this machine as
#: little CPU as it can (one record batch per partition per 10 ms tick, keyed as Kafka's
#: default partitioner would key it).
LOAD_SCRIPT = """
import asyncio, sys, time, orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
bootstrap, topic, rate, seconds, prefix, accounts, day = sys.argv[1:8]
rate, seconds, accounts = int(rate), float(seconds), int(accounts)
async def main():
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    partitions = len(await producer.partitions_for(topic))
    keys = [f"{prefix}{n}".encode() for n in range(accounts)]
    partition_of = [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]
    began, sent, tick, reported, pending = time.monotonic(), 0, 0.01, 0, []
    while time.monotonic() - began < seconds:
        if time.monotonic() - reported >= 0.5:
            print(sent, flush=True)
            reported = time.monotonic()
        due = int((time.monotonic() - began) * rate)
        batches = {}
        while sent < due:
            index = sent % accounts
            event = {"type": "usage", "event_id": f"bg-{prefix}{sent}", "occurred_at": day,
                     "account_id": keys[index].decode(), "model": "mimo-v2.5", "input_cache_hit_tokens": 10,
                     "input_cache_miss_tokens": 10, "output_tokens": 10, "key_id": "k", "cluster": "cn",
                     "protocol": "openai"}
            batch = batches.get(partition_of[index])
            if batch is None:
                batch = batches[partition_of[index]] = producer.create_batch()
            if batch.append(key=keys[index], value=orjson.dumps(event), timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition_of[index]))
                batch = batches[partition_of[index]] = producer.create_batch()
                batch.append(key=keys[index], value=orjson.dumps(event), timestamp=None)
            sent += 1
        for partition, batch in batches.items():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        pending = [future for future in pending if not future.done()]
        await asyncio.sleep(tick)
    await asyncio.gather(*pending)
    await producer.stop()
    print(sent)
asyncio.run(main())
"""


#: How long the lookup section waits for its second worker (changelog recovery included).
SECOND_WORKER_READY_S = 600

#: Clients of the second, lighter lookup measurement (the first uses `lookup_concurrency`).
LIGHT_LOOKUP_CONCURRENCY = 4
#: The second stop-service load, as a fraction of the measured pipeline rate (target:
#: p99 <= 250 ms under half the pipeline rate, busy accounts at steady-state size).
SUSTAINED_FRACTION = 0.5
#: The soak's default load, as a fraction of the rate the worker applies a backlog over the
#: soak's own accounts (measured first: `soak_capacity`). Why not the pipeline section's rate:
#: the soak's load goes round-robin over 20,000 accounts, so nearly every event writes an
#: account record and a usage chunk of its own (~3 changelog records per event against
#: ~1.3 on the pipeline's 1,000 accounts), and the load generator shares the 2 cores.
SOAK_FRACTION = 0.5
#: The soak's RSS target: end within this fraction of start.
SOAK_RSS_TOLERANCE = 0.15
#: How long the soak waits, after the load, for the worker to apply what it was sent.
SOAK_DRAIN_S = 60.0
#: Consecutive exhaustions not seen within the timeout before a load is declared unsustainable.
STOP_TIMEOUTS_MAX = 3


async def stop_latency(config: BenchConfig, worker: WorkerProcess, ns: Namespace, background: list[str],
                       load_rate: int, slug: str) -> dict:
    """Exhaust `exhaustions` lite accounts one by one under a background load spread over
    `background`; time lookup and status.

    Stops early after STOP_TIMEOUTS_MAX consecutive timeouts: the worker cannot keep up
    with that load, and every later measurement would only time the backlog.
    """
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
    return {"background_rate_target": load_rate, "background_accounts": len(background),
            "background_events_sent": int(sent_load or 0), "sustained": streak < STOP_TIMEOUTS_MAX,
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


async def wait_consumed(worker: WorkerProcess, ns: Namespace, target: int, timeout_s: float) -> bool:
    """Until the worker's ledger-log count reaches `target`; whether it did within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.process.returncode}; log: {worker.log_tail()}")
        if consumed(worker, ns) >= target:
            return True
        await asyncio.sleep(0.25)
    return consumed(worker, ns) >= target


def usage_event(account_id: str, event_id: str, occurred_at: datetime) -> dict:
    """A small valid usage event (30 tokens), like the background load's."""
    return {"type": "usage", "event_id": event_id, "occurred_at": stamp(occurred_at), "account_id": account_id,
            "model": "mimo-v2.5", "input_cache_hit_tokens": 10, "input_cache_miss_tokens": 10,
            "output_tokens": 10, "key_id": "k", "cluster": "cn", "protocol": "openai"}


async def bring_to_steady_state(config: BenchConfig, worker: WorkerProcess, ns: Namespace, busy: list[str]) -> dict:
    """Send each busy account `steady_events_per_account` usage events (round-robin, event
    times before the background load's) and wait, at most `steady_wait_seconds`, until the
    worker applied them: their records then have the size a busy account's has."""
    day = recent_day()
    events = [usage_event(account, f"warm-{account}-{index}", day + timedelta(hours=1, seconds=index))
              for index in range(config.steady_events_per_account) for account in busy]
    before = consumed(worker, ns)
    began = time.monotonic()
    await produce_all(config.bootstrap, ns.topic("usage"), events)
    caught_up = await wait_consumed(worker, ns, before + len(events), timeout_s=config.steady_wait_seconds)
    seconds = time.monotonic() - began
    applied = consumed(worker, ns) - before
    if caught_up:
        await wait_caught_up(worker, ns, timeout_s=30.0)
    return {"busy_accounts": len(busy), "events_per_account": config.steady_events_per_account,
            "events": len(events), "applied": applied, "seconds": round(seconds, 1),
            "events_per_s": round(applied / max(seconds, 1e-9), 1), "caught_up": caught_up}


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


async def lookup_with_cpu(config: BenchConfig, workers: list[WorkerProcess], accounts: list[str],
                          concurrency: int) -> dict:
    """`lookup_latency`, with the CPU per request of each party: the client (this process),
    each faust worker, and the cores other processes took meanwhile (the broker, compactions)."""
    fausts = [faust_pid(worker.process.pid) for worker in workers]
    trees = [pid for worker in workers for pid in process_tree(worker.process.pid)]
    machine, ours, client = machine_busy_s(), sum(map(cpu_seconds, trees)), time.process_time()
    workers_before = [cpu_seconds(pid) for pid in fausts]
    result = await lookup_latency(config, workers, accounts, concurrency)
    client = time.process_time() - client
    requests = max(1, result["local"]["count"] + result["routed"]["count"])
    others = machine_busy_s() - machine - (sum(map(cpu_seconds, trees)) - ours) - client
    result["cpu_ms_per_request"] = {
        "client": round(client / requests * 1000, 3),
        "workers": [round((cpu_seconds(pid) - before) / requests * 1000, 3)
                    for pid, before in zip(fausts, workers_before)]}
    result["other_processes_cores"] = round(others / config.lookup_seconds, 2)
    return result


# ---------------------------------------------------------------- 5. replay

def replay_file(config: BenchConfig) -> dict:
    from bench import replay as replay_bench

    path = str(config.work_dir / "replay-events.jsonl")
    replay_bench.generate(path, config.replay_events, accounts=2_000)
    _ledger, lines, seconds = replay_bench.replay(path)
    return {"events": lines, "seconds": round(seconds, 2), "events_per_s": round(lines / seconds, 1), "path": path,
            "parallel": replay_workers(path, lines, seconds)}


#: Process counts `tokenplan replay --workers N` is timed with (this machine has 2 cores).
REPLAY_WORKERS = (2,)


def replay_workers(path: str, lines: int, single_s: float) -> list[dict]:
    """`replay_parallel` (what `tokenplan replay --workers N` runs) on the same file: speed-up."""
    from streams.config import limits_from_env, partitions_from_env
    from streams.audit.parallel import replay_parallel

    out = []
    for workers in REPLAY_WORKERS:
        began = time.perf_counter()
        replay_parallel(path, workers, partitions_from_env(), datetime.now(timezone.utc), limits_from_env())
        seconds = time.perf_counter() - began
        out.append({"workers": workers, "seconds": round(seconds, 2), "events_per_s": round(lines / seconds, 1),
                    "speedup": round(single_s / seconds, 2)})
    return out


async def replay_kafka(config: BenchConfig, path: str) -> dict:
    from streams.config import Settings
    from streams.audit.kafka_replay import replay_ledger_log
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
        report["pipeline"].update(changelog_summary([p["changelog"] for p in pipeline]))
        log(f"changelog: {report['pipeline']['changelog_bytes_per_usage_event']} B per usage event "
            f"({report['pipeline']['changelog_method']})")
        # Half the pipeline rate (the target's load). The pipeline's accounts have small
        # records; the stop-service load goes to busy accounts brought to steady-state
        # size first, which costs the worker more per event (docs/performance.md).
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
    if "gateway" in config.sections:
        from bench.gateway import GatewayBenchSizes, gateway_section

        sizes = GatewayBenchSizes(config.gateway_concurrency, config.gateway_requests, config.gateway_exhaustions,
                                  config.gateway_parallel, config.gateway_latency_ms, config.gateway_cache_keys,
                                  config.gateway_decisions)
        report["gateway"] = await gateway_section(config.bootstrap, config.work_dir, sizes, log)
    if "projections" in config.sections:
        from bench.projections import ProjectionsBenchSizes, projections_section

        sizes = ProjectionsBenchSizes(config.projections_accounts, config.projections_events, config.projections_rate,
                                      config.projections_seconds, config.projections_dashboard_days,
                                      config.projections_dashboard_models, config.projections_dashboard_requests,
                                      config.projections_postgres)
        report["projections"] = await projections_section(config.bootstrap, config.work_dir, sizes, log,
                                                          (report.get("pipeline") or {}).get("events_per_s"))
    if "soak" in config.sections:
        report["soak"] = await soak(config, log, config.soak_rate)
    report["finished_at"] = stamp(datetime.now(timezone.utc))
    return report


def changelog_summary(rounds: list[dict]) -> dict:
    """The pipeline section's changelog figures: medians over the rounds."""
    def median_of(key: str):
        values = [r[key] for r in rounds if r.get(key) is not None]
        return round(statistics.median(values), 1) if values else None
    return {"changelog_bytes_per_usage_event": median_of("bytes_per_usage_event"),
            "changelog_records_per_usage_event": median_of("records_per_usage_event"),
            "changelog_payload_bytes_per_usage_event": median_of("payload_bytes_per_usage_event"),
            "changelog_method": rounds[0]["method"] if rounds else None,
            "changelog_topics": sorted({t for r in rounds for t in r["topics"]})}


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


#: The stop-service rows: (label, slug, whether the busy accounts are brought to steady state first).
STOP_ROWS = (("target", "target", False),
             ("half the pipeline rate, busy accounts at steady state", "half", True))


async def live_sections(config: BenchConfig, log, sustainable_rate: int) -> dict:
    """Stop-service latency at the target load and at half the pipeline rate (a fresh
    worker each: a saturated worker's backlog would delay the next section; the second
    one's load goes to busy accounts brought to steady-state size first), then lookups
    with a second worker joined."""
    stop, workers = {}, []
    try:
        for label, slug, steady in STOP_ROWS:
            rate = sustainable_rate if steady else config.load_rate
            worker, ns, background = await start_loaded_worker(config, slug)
            workers.append(worker)
            load_accounts = background
            warm = None
            if steady:
                load_accounts = background[:max(1, min(config.busy_accounts, len(background)))]
                warm = await bring_to_steady_state(config, worker, ns, load_accounts)
                log(f"steady state: {warm['events']:,} events to {warm['busy_accounts']} busy accounts in "
                    f"{warm['seconds']} s ({warm['events_per_s']:,.0f} events/s), caught up: {warm['caught_up']}")
            stop[label] = await stop_latency(config, worker, ns, load_accounts, rate, slug)
            if warm is not None:
                stop[label]["steady_state"] = warm
            log(f"stop-service at {rate}/s: lookup p50 {stop[label]['lookup']['p50_ms']} ms "
                f"p99 {stop[label]['lookup']['p99_ms']} ms, status topic p99 {stop[label]['status_topic']['p99_ms']} ms, "
                f"{stop[label]['timeouts']} timeouts")
            if label == "target":
                worker.stop()
        second = WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-second").start()
        workers.append(second)
        # The second worker recovers its partitions' changelog first: after the half-rate
        # phase on a slow day that took over 120 s here (a full run failed on it).
        second.wait_healthy(timeout_s=SECOND_WORKER_READY_S)
        await asyncio.sleep(3.0)
        worker.wait_healthy(timeout_s=SECOND_WORKER_READY_S)
        await wait_caught_up(worker, ns)  # lookups measured on an idle worker, not behind a backlog
        # ... nor beside the compactions the half-rate load left and the second worker's recovery.
        rest = await wait_machine_idle(timeout_s=config.lookup_idle_wait_seconds)
        log(f"machine at rest before lookups: {rest}")
        lookup = await lookup_with_cpu(config, [worker, second], background, config.lookup_concurrency)
        lookup["machine_rest"] = rest
        log(f"lookup: local p99 {lookup['local']['p99_ms']} ms, routed p99 {lookup['routed']['p99_ms']} ms, "
            f"{lookup['requests_per_s']:,.0f} req/s, CPU ms per request {lookup['cpu_ms_per_request']}, "
            f"other processes {lookup['other_processes_cores']} cores")
        light = await lookup_with_cpu(config, [worker, second], background, LIGHT_LOOKUP_CONCURRENCY)
        log(f"lookup, {LIGHT_LOOKUP_CONCURRENCY} clients: local p99 {light['local']['p99_ms']} ms")
        return {"stop_service": stop, "lookup": lookup, "lookup_light": light}
    finally:
        for worker in workers:
            worker.stop()



# ---------------------------------------------------------------- 6. soak

def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (Linux /proc); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_rss(worker: WorkerProcess, elapsed_s: float) -> dict:
    """One RSS sample of a worker: the sum over the command and its children (the faust
    worker is a child of the supervising `tokenplan worker`)."""
    pids = process_tree(worker.process.pid)
    return {"t_s": round(elapsed_s, 1), "rss_kib": sum(rss_kib(pid) for pid in pids), "pids": pids}


async def soak_capacity(config: BenchConfig, worker: WorkerProcess, ns: Namespace, accounts: list[str],
                        day: datetime) -> dict:
    """The rate the worker applies a backlog of `soak_probe_events` usage events spread
    round-robin over `accounts` (as the soak's load is), from its first to its last
    balance-changed record."""
    events = [usage_event(accounts[index % len(accounts)], f"probe-{index}",
                          day + timedelta(hours=1, microseconds=index))
              for index in range(config.soak_probe_events)]
    await produce_all(config.bootstrap, ns.topic("usage"), events)
    count, first_s, last_s = await count_topic_records(config.bootstrap, ns.topic("balance-changed"), len(events),
                                                       timeout_s=max(120.0, len(events) / 50),
                                                       marker=b'"cause_event_id":"probe-')
    seconds = max(last_s - first_s, 1e-9)
    return {"events": len(events), "applied": count, "seconds": round(seconds, 2),
            "events_per_s": round(count / seconds, 1)}


async def soak(config: BenchConfig, log, rate: int | None) -> dict:
    """One worker, `soak_accounts` max-plan accounts, LOAD_SCRIPT at `rate` over all of them
    for `soak_seconds`; the worker's RSS at the start of the load (purchases applied),
    every `soak_sample_seconds`, and at the end (summed over the worker command and the
    faust worker it supervises); what it applied and whether it kept up.

    The ±SOAK_RSS_TOLERANCE check compares the end with the first sample at or after
    `soak_warmup_seconds`: until then the worker fills what is bounded by design (its
    record cache with every account's record, RocksDB's shared memtables up to their cap,
    the block cache), which is not growth. Both start figures are reported."""
    ns = Namespace()
    worker = WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-soak").start()
    load_out = config.work_dir / f"{ns.name}-soak-load.out"
    try:
        worker.wait_healthy(timeout_s=120)
        accounts = [f"soak-{index}" for index in range(config.soak_accounts)]
        day = recent_day()
        before = consumed(worker, ns)
        began = time.monotonic()
        await produce_all(config.bootstrap, ns.topic("plans"), [
            {"type": "plan.purchased", "event_id": f"buy-{a}", "occurred_at": stamp(day), "account_id": a,
             "tier": "max", "period": "monthly", "currency": "USD", "auto_renew": False} for a in accounts])
        if not await wait_consumed(worker, ns, before + len(accounts), timeout_s=max(180.0, len(accounts) / 20)):
            raise RuntimeError(f"soak: the worker applied {consumed(worker, ns) - before} of {len(accounts)} purchases")
        sample = accounts[:5] + accounts[-5:] + random.Random(5).sample(accounts, min(40, len(accounts)))
        await wait_accounts_active(worker, sorted(set(sample)))  # the count says applied; a sample says active
        purchases_s = time.monotonic() - began
        capacity = None
        if rate is None:
            capacity = await soak_capacity(config, worker, ns, accounts, day)
            rate = max(10, int(capacity["events_per_s"] * SOAK_FRACTION))
            log(f"soak: a backlog of {capacity['events']:,} usage events over the {len(accounts):,} accounts "
                f"applied at {capacity['events_per_s']:,.0f} events/s")
        await wait_caught_up(worker, ns, timeout_s=120.0)
        log(f"soak: {len(accounts):,} purchases applied in {purchases_s:.0f} s; "
            f"load {rate}/s for {config.soak_seconds:.0f} s")
        samples = [worker_rss(worker, 0.0)]
        consumed_start = consumed(worker, ns)
        with open(load_out, "w") as out:
            load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, config.bootstrap, ns.topic("usage"), str(rate),
                                     str(config.soak_seconds), "soak-", str(len(accounts)),
                                     stamp(day + timedelta(hours=2))], stdout=out, text=True)
        load_began = time.monotonic()
        try:
            next_sample = load_began + config.soak_sample_seconds
            while load.poll() is None:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.process.returncode} during the soak; "
                                       f"log: {worker.log_tail()}")
                await asyncio.sleep(max(0.0, min(0.5, next_sample - time.monotonic())))
                if time.monotonic() >= next_sample and load.poll() is None:
                    samples.append(worker_rss(worker, time.monotonic() - load_began))
                    next_sample += config.soak_sample_seconds
        finally:
            if load.poll() is None:
                load.terminate()
            load.wait(timeout=60)
        elapsed = time.monotonic() - load_began
        consumed_end = consumed(worker, ns)
        samples.append(worker_rss(worker, elapsed))
        lines = load_out.read_text().split()
        sent = int(lines[-1]) if lines else 0
        applied = consumed_end - consumed_start
        lag_at_end = sent - applied
        drained = await wait_consumed(worker, ns, consumed_start + sent, timeout_s=SOAK_DRAIN_S)
        drain_s = round(time.monotonic() - load_began - elapsed, 1)
    finally:
        worker.stop()
    start_kib, end_kib = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    warm = next((x for x in samples if x["t_s"] >= config.soak_warmup_seconds), samples[-1])
    ratio = end_kib / warm["rss_kib"]
    result = {"accounts": len(accounts), "seconds": round(elapsed, 1), "rate_target": rate, "capacity": capacity,
              "purchases_seconds": round(purchases_s, 1),
              "events_sent": sent, "events_applied": applied,
              "applied_events_per_s": round(applied / max(elapsed, 1e-9), 1),
              # Kept up: at the end of the load, at most two seconds of it not yet applied.
              "lag_at_end": lag_at_end, "kept_up": lag_at_end <= max(2 * rate, 10),
              "drained": drained, "drain_seconds": drain_s,
              "rss_start_mib": round(start_kib / 1024, 1), "rss_warm_mib": round(warm["rss_kib"] / 1024, 1),
              "warmup_seconds": warm["t_s"], "rss_end_mib": round(end_kib / 1024, 1),
              "rss_max_mib": round(max(x["rss_kib"] for x in samples) / 1024, 1),
              "rss_end_to_start": round(end_kib / start_kib, 3), "rss_end_to_warm": round(ratio, 3),
              "rss_within_tolerance": abs(ratio - 1) <= SOAK_RSS_TOLERANCE,
              "rss_tolerance": SOAK_RSS_TOLERANCE,
              # RSS is summed over the worker command and its children; a changed set of
              # pids means the faust worker was started again (its RSS began anew).
              "rss_processes": len(samples[0]["pids"]),
              "worker_restarted": any(x["pids"] != samples[0]["pids"] for x in samples),
              "samples": [{"t_s": x["t_s"], "rss_mib": round(x["rss_kib"] / 1024, 1)} for x in samples]}
    log(f"soak: RSS {result['rss_start_mib']} at the start, {result['rss_warm_mib']} after {warm['t_s']:.0f} s of "
        f"warm-up -> {result['rss_end_mib']} MiB at the end (max {result['rss_max_mib']}, x{ratio:.3f} of the warm "
        f"figure); applied {result['applied_events_per_s']:,.0f} events/s of {rate}/s; "
        f"kept up: {result['kept_up']}")
    return result
