"""The sequencer: both input topics into one per-account ledger-log, in applied order.

Why: the rules depend on the order of an account's package and usage events, and two
input topics have no order between them. The sequencer forwards each input record,
byte for byte, to `ledger-log` keyed by account_id (so the partition is the murmur2
partition the table and lookups use, whatever partitioner a gateway used), with headers
naming the input topic, partition and offset. The ledger consumes only ledger-log, so
the order it applied is persisted and a replay of ledger-log reproduces the balances
exactly.

A `quota.refreshed` without account_id is sent to every ledger-log partition, so it
reaches every account on every partition (each partition applies it once).

Why a plain aiokafka consumer and not a faust agent: the sequencer holds no state, and
a faust stream costs ~0.2 ms of CPU per event where a consume-forward-commit loop costs
~0.04 ms (docs/performance.md). It runs in the worker process as a service of the faust
app, in its own consumer group (`<app id>-sequencer`): a batch is forwarded, Kafka
acknowledges it, then its input offsets are committed. A crash or a rebalance before
the commit forwards the batch again; the ledger recognises the repeats by event_id.
"""
from __future__ import annotations

import asyncio
import logging

import mode
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from streams.agents import stats
from streams.agents.outbox import Outbox
from streams.app import app, settings
from streams.config import Settings

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


def forward(message: ConsumerRecord, broadcast_allowed: bool, outbox: Outbox) -> None:
    """Queue one input record for ledger-log (to every partition for a global refresh)."""
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


class Sequencer(mode.Service):
    """Consume usage and plans, forward each batch to ledger-log, commit after delivery."""

    #: Seconds to wait after a failed batch before reading again from the committed offsets.
    retry_backoff_s = 1.0

    def __init__(self, config: Settings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.outbox = Outbox(config.partitions)
        self.inputs = {config.topic(topics.USAGE), config.topic(topics.PLANS)}
        self.plans = config.topic(topics.PLANS)

    async def on_start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.config.bootstrap_servers, acks="all",
                                         enable_idempotence=True, linger_ms=self.config.producer_linger_ms)
        self.consumer = AIOKafkaConsumer(
            *sorted(self.inputs), bootstrap_servers=self.config.bootstrap_servers,
            group_id=f"{self.config.app_id}-sequencer", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=min(3000, self.config.session_timeout_ms // 3),
            max_poll_records=self.config.sequencer_batch_max)
        await self.producer.start()
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    @mode.Service.task
    async def _forward_forever(self) -> None:
        while not self.should_stop:
            try:
                await self.forward_batch()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # broker trouble, a rebalance during commit: read again
                logger.warning("sequencer: batch not forwarded (%r); rereading from the committed offsets", error)
                self.outbox = Outbox(self.config.partitions)
                await self.sleep(self.retry_backoff_s)
                await self._rewind()

    async def forward_batch(self) -> None:
        """One batch from the inputs to ledger-log; its offsets committed once delivered."""
        assert self.consumer is not None and self.producer is not None
        fetched = await self.consumer.getmany(timeout_ms=max(1, self.config.batch_wait_ms),
                                              max_records=self.config.sequencer_batch_max)
        if not fetched:
            return
        for records in fetched.values():
            for record in records:
                forward(record, record.topic == self.plans, self.outbox)
        await self.outbox.send(self.producer)
        await self.consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})

    async def _rewind(self) -> None:
        """Back to the committed offsets of the partitions still assigned; retried until it works.

        A partition revoked meanwhile is skipped: its new owner reads from the committed
        offset. Giving up here would leave the position past a batch never delivered.
        """
        assert self.consumer is not None
        while not self.should_stop:
            try:
                for tp in list(self.consumer.assignment()):
                    committed = await self.consumer.committed(tp)
                    if tp not in self.consumer.assignment():
                        continue
                    if committed is None:
                        await self.consumer.seek_to_beginning(tp)
                    else:
                        self.consumer.seek(tp, committed)
                return
            except Exception as error:
                logger.warning("sequencer: cannot rewind to the committed offsets yet (%r)", error)
                await self.sleep(self.retry_backoff_s)


app.service(Sequencer(settings))
