"""The sequencer: both input topics into one per-account ledger-log, in applied order.

Why: the rules depend on the order of an account's package and usage events, and two
input topics have no order between them. The sequencer forwards each input record,
byte for byte, to `ledger-log` keyed by account_id (so the producer's murmur2
partitioner picks the partition the table and lookups use, whatever partitioner a
gateway used), with headers naming the input topic, partition and offset. The ledger
consumes only ledger-log, so the order it applied is persisted and a replay of
ledger-log reproduces the balances exactly.

A `quota.refreshed` without account_id is sent to every ledger-log partition, so it
reaches every account on every partition (each partition applies it once).
"""
from __future__ import annotations

import logging

import orjson

from schemas import topics
from streams.agents import stats
from streams.agents.outbox import Outbox
from streams.app import app, kafka_producer, plans_topic, settings, usage_topic

logger = logging.getLogger(__name__)
LEDGER_LOG = settings.topic(topics.LEDGER_LOG)


def routing_key(key: bytes | None, value: bytes) -> bytes | None:
    """The ledger-log key: the message key, else the payload's account_id when readable."""
    if key:
        return key
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    account_id = payload.get("account_id") if isinstance(payload, dict) else None
    return account_id.encode("utf-8") if isinstance(account_id, str) and account_id else None


def is_global_refresh(key: bytes | None, value: bytes) -> bool:
    """A quota.refreshed without account_id (only billing sends those, on `plans`)."""
    if key:
        return False
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and payload.get("type") == "quota.refreshed" and payload.get("account_id") is None


def forward(event, broadcast_allowed: bool, outbox: Outbox) -> None:
    """Queue one input record for ledger-log (to every partition for a global refresh)."""
    message = event.message
    stats.count(message.topic)
    value = message.value if message.value is not None else b""
    headers = [
        (topics.HEADER_SOURCE_TOPIC, message.topic.encode()),
        (topics.HEADER_SOURCE_PARTITION, str(message.partition).encode()),
        (topics.HEADER_SOURCE_OFFSET, str(message.offset).encode()),
    ]
    if broadcast_allowed and is_global_refresh(message.key, value):
        for partition in range(settings.partitions):
            outbox.add(LEDGER_LOG, None, value, partition, headers)
        return
    key = routing_key(message.key, value)
    # Without any key the record stays on its input partition; the ledger dead-letters it.
    outbox.add(LEDGER_LOG, key, value, None if key else message.partition, headers)


async def sequence(stream, broadcast_allowed: bool) -> None:
    """Batches (no table here, so mixing partitions in a batch is harmless). A batch's
    records reach ledger-log (`Outbox.send` waits for Kafka) before faust acks it."""
    outbox = Outbox(settings.partitions)
    async for batch in stream.take_events(settings.sequencer_batch_max, within=settings.batch_wait_s):
        for event in batch:
            forward(event, broadcast_allowed, outbox)
        await outbox.send(kafka_producer())


@app.agent(usage_topic, concurrency=1)
async def sequence_usage(stream) -> None:
    await sequence(stream, broadcast_allowed=False)


@app.agent(plans_topic, concurrency=1)
async def sequence_plans(stream) -> None:
    await sequence(stream, broadcast_allowed=True)
