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
from streams.app import app, ledger_log_topic, plans_topic, settings, usage_topic

logger = logging.getLogger(__name__)


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


def forward(event, broadcast_allowed: bool) -> None:
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
            ledger_log_topic.send_soon(key=None, value=value, partition=partition, headers=headers)
        return
    key = routing_key(message.key, value)
    # Without any key the record stays on its input partition; the ledger dead-letters it.
    partition = None if key else message.partition
    ledger_log_topic.send_soon(key=key, value=value, partition=partition, headers=headers)


#: How long the sequencer waits to fill a batch (stream.take_events).
BATCH_WAIT_S = 0.01


@app.agent(usage_topic, concurrency=1)
async def sequence_usage(stream) -> None:
    """Batches (no table here, so mixing partitions in a batch is harmless); sends are
    buffered and faust flushes them before it commits the input offsets."""
    async for batch in stream.take_events(settings.sequencer_batch_max, within=BATCH_WAIT_S):
        for event in batch:
            forward(event, broadcast_allowed=False)


@app.agent(plans_topic, concurrency=1)
async def sequence_plans(stream) -> None:
    async for batch in stream.take_events(settings.sequencer_batch_max, within=BATCH_WAIT_S):
        for event in batch:
            forward(event, broadcast_allowed=True)
