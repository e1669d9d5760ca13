"""Small real-Kafka helpers for the integration tests (aiokafka, no mocks)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.localrun import Namespace, WorkerProcess, http_get


def instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def recent_utc_day(now: datetime | None = None) -> datetime:
    """Midnight UTC two days ago: a purchase then is valid now and leaves room for boundaries."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


async def produce(bootstrap: str, topic: str, events: Iterable[dict | bytes], key: bytes | None | str = "account") -> list:
    """Send events keyed by their account_id (or a fixed key / None); wait for the acks and
    return their RecordMetadata (topic, partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        futures = []
        for event in events:
            value = event if isinstance(event, bytes) else orjson.dumps(event)
            if key == "account":
                message_key = event.get("account_id", "").encode() if isinstance(event, dict) and event.get("account_id") else None
            else:
                message_key = key
            futures.append(await producer.send(topic, value, key=message_key))
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def produce_records(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> list:
    """Send (topic, key, value) records in order with one producer; return their RecordMetadata."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, idle_s: float = 2.0, timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every record of `topic` from the beginning, until nothing new arrives for idle_s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for messages in batch.values():
                records.extend((message.key, message.value) for message in messages)
    finally:
        await consumer.stop()
    return records


async def consume_json(bootstrap: str, namespace: Namespace, short_name: str, **kwargs) -> list[dict]:
    return [orjson.loads(value) for _key, value in await consume_all(bootstrap, namespace.topic(short_name), **kwargs)]


def lookup(worker: WorkerProcess, account_id: str, as_of: str | None = None) -> tuple[int, dict]:
    query = "" if as_of is None else f"?as_of={as_of}"
    return http_get(f"{worker.url}/accounts/{account_id}/quota{query}")


async def wait_for(predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def wait_lookup(worker: WorkerProcess, account_id: str, check: Callable[[dict], bool],
                      as_of: str | None = None) -> dict:
    """Poll the worker's lookup until `check` holds; a timeout names the last answer seen."""
    seen: list[tuple[int, dict]] = []

    def probe():
        status, body = lookup(worker, account_id, as_of)
        seen[:] = [(status, body)]
        return body if status == 200 and check(body) else None
    try:
        return await wait_for(probe, what=f"lookup of {account_id} to satisfy the check")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; last answer: {seen[0] if seen else None}") from None
