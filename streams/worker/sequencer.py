"""The sequencer: both input topics into one ledger-log, in applied order, in batches.

Why: the rules depend on the order of an account's package and usage events, and two
input topics have no order between them. The sequencer routes each input record by
account_id (the murmur2 partition the table and lookups use, whatever partitioner a
gateway used) and packs the records of one fetch bound for one ledger-log partition
into one v2 record (`batch_record`: each input event byte for byte, with its input
topic, partition and offset), up to TOKENPLAN_LEDGER_RECORD_EVENTS_MAX events and
TOKENPLAN_LEDGER_RECORD_BYTES_MAX bytes. One record is the ledger's unit of work:
faust acks, commits and redelivers it whole, so a batch can never be torn. The ledger
consumes only ledger-log, so the order it applied is persisted and a replay of
ledger-log reproduces the balances exactly.

A `quota.refreshed` without account_id is put in the batch of every ledger-log
partition, so it reaches every account on every partition (each applies it once).

Why a plain aiokafka consumer and not a faust agent: the sequencer holds no state, and
a faust stream costs ~0.2 ms of CPU per event where a consume-forward-commit loop costs
~0.04 ms (docs/performance.md). It runs in the worker process as a service of the faust
app (TOKENPLAN_SEQUENCER=inline) or in a process of its own (`process`, the default,
started by `tokenplan worker`), in its own consumer group (`<app id>-sequencer`): a batch is forwarded, Kafka
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
from streams.processing.batch_record import FORMAT_HEADER, InputEvent, encode_batch, encoded_size
from streams.worker.outbox import Outbox
from streams.ledger.partitioning import key_partition
from streams.config import Settings

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


class Batches:
    """Input records grouped into v2 ledger-log records, one partition at a time."""

    def __init__(self, partitions: int, events_max: int, bytes_max: int) -> None:
        self.partitions = partitions
        self.events_max = events_max
        self.bytes_max = bytes_max
        self._open: dict[int, tuple[list[InputEvent], int]] = {}
        self.closed: list[tuple[int, list[InputEvent]]] = []

    def add(self, partition: int, event: InputEvent) -> None:
        events, size = self._open.get(partition, ([], 0))
        grown = size + encoded_size(event)
        if events and (len(events) >= self.events_max or grown > self.bytes_max):
            self.closed.append((partition, events))
            events, grown = [], encoded_size(event)
        events.append(event)
        self._open[partition] = (events, grown)

    def close(self) -> list[tuple[int, list[InputEvent]]]:
        """Every batch, in the order they filled (per partition: input order)."""
        batches = self.closed + [(partition, events) for partition, (events, _) in self._open.items()]
        self._open, self.closed = {}, []
        return batches


def forward(message: ConsumerRecord, broadcast_allowed: bool, batches: Batches) -> None:
    partitions = batches.partitions
    """Put one input record in the batch of its ledger-log partition (of every one for a global refresh)."""
    value = message.value if message.value is not None else b""
    event = InputEvent(message.topic, message.partition, message.offset, message.key, value)
    if broadcast_allowed and is_global_refresh(message.key, value):
        for partition in range(partitions):
            batches.add(partition, event)
        return
    key = routing_key(message.key, value)
    # Without any key the record stays on its input partition; the ledger dead-letters it.
    batches.add(key_partition(key, partitions) if key else message.partition % partitions, event)


_V2_HEADERS = [(FORMAT_HEADER, b"2")]


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
        self.ledger_log = config.topic(topics.LEDGER_LOG)

    async def on_start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.config.bootstrap_servers, acks="all",
                                         enable_idempotence=True, linger_ms=self.config.producer_linger_ms)
        self.consumer = AIOKafkaConsumer(
            *sorted(self.inputs), bootstrap_servers=self.config.bootstrap_servers,
            group_id=f"{self.config.app_id}-sequencer", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=min(3000, self.config.session_timeout_ms // 3),
            max_poll_records=self.config.sequencer_batch_max,
            # The broker holds a fetch until 64 KiB or the batching window: under a live load,
            # one fetch request per window instead of one per millisecond (each costs a syscall
            # round trip on both sides).
            fetch_min_bytes=64 * 1024, fetch_max_wait_ms=max(1, self.config.batch_wait_ms))
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

    async def fetch_window(self) -> dict:
        """Input records of one batch: from the first record, up to `batch_wait_ms` more of
        them (or `sequencer_batch_max` records), so that under load a ledger-log record
        carries many events (the ledger pays a fixed cost per record), and a lone event
        waits at most the window."""
        assert self.consumer is not None
        batch_max, wait_s = self.config.sequencer_batch_max, self.config.batch_wait_ms / 1000
        fetched = await self.consumer.getmany(timeout_ms=max(1, self.config.batch_wait_ms), max_records=batch_max)
        if not fetched or wait_s <= 0:
            return fetched
        loop = asyncio.get_running_loop()
        deadline, count = loop.time() + wait_s, sum(map(len, fetched.values()))
        while count < batch_max and (left := deadline - loop.time()) > 0:
            more = await self.consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=batch_max - count)
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
                count += len(records)
        return fetched

    async def forward_batch(self) -> None:
        """One batch from the inputs to ledger-log; its offsets committed once delivered."""
        assert self.consumer is not None and self.producer is not None
        fetched = await self.fetch_window()
        if not fetched:
            return
        batches = Batches(self.config.partitions, self.config.ledger_record_events_max,
                          self.config.ledger_record_bytes_max)
        for records in fetched.values():
            for record in records:
                forward(record, record.topic == self.plans, batches)
        for partition, events in batches.close():
            self.outbox.add(self.ledger_log, None, encode_batch(events), partition, _V2_HEADERS)
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



def run_process(config: Settings, loglevel: str = "info") -> int:
    """The sequencer alone in its own process (`TOKENPLAN_SEQUENCER=process`, the default):
    it then has a core of its own instead of sharing the ledger's."""
    worker = mode.Worker(Sequencer(config), loglevel=loglevel, daemon=True)
    worker.execute_from_commandline()
    return 0
