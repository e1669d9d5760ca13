"""Replay the ledger-log from Kafka with the same code the live ledger runs.

The ledger-log holds every input event in the order the ledger applied it, one
partition per group of accounts. Replaying it through `Processor` on in-memory
stores (one per partition, as the live worker has one table partition each) gives
exactly the state the live worker must have: that is what `tokenplan audit` checks.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import topics
from schemas.events import format_instant
from streams.agents.processor import DictStore, Processor
from streams.agents.records import LogPosition, Source
from streams.config import Settings
from streams.ledger import Catalog, Limits, Reason, account_view

#: Rejections of events that never reached the rules (the file replay lists no account for them).
UNREADABLE_REASONS = frozenset({
    Reason.INVALID_JSON.value, Reason.EVENT_TOO_LARGE.value, Reason.INVALID_EVENT.value, Reason.UNKNOWN_TYPE.value,
    Reason.INVALID_TIMESTAMP.value, Reason.TOKENS_OUT_OF_RANGE.value, Reason.ID_TOO_LONG.value,
    Reason.SECRET_IN_EVENT.value, "key_mismatch",
})

#: Records fetched per poll while replaying.
FETCH_RECORDS_MAX = 5000


@dataclass
class Progress:
    """What a progress display needs: events read, rate, and lag to the end offsets."""

    events: int = 0
    total: int = 0
    started_s: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started_s, 1e-9)

    @property
    def lag(self) -> int:
        return max(self.total - self.events, 0)


@dataclass
class KafkaReplay:
    """The replayed partitions and where each ended (the end offsets when it started)."""

    stores: dict[int, DictStore]
    end_offsets: dict[int, int]
    rejected: list[dict]

    def accounts(self) -> dict:
        return {account_id: record for store in self.stores.values() for account_id, record in store.accounts.items()}

    def result(self, as_of: datetime) -> dict:
        """The same JSON as the file replay (plus where the log ended).

        Like the file replay, an account whose events were all refused by the rules
        (not by decoding) is listed, with status none.
        """
        records = self.accounts()
        refused_only = {entry["account_id"] for entry in self.rejected
                        if entry.get("account_id") and entry["reason"] not in UNREADABLE_REASONS} - set(records)
        views = {account_id: account_view(records[account_id].state, as_of) for account_id in records}
        views.update({account_id: account_view(None, as_of) for account_id in refused_only})
        return {
            "as_of": format_instant(as_of),
            "accounts": {account_id: views[account_id] for account_id in sorted(views)},
            "rejected": self.rejected,
            "log_end_offsets": {str(partition): offset for partition, offset in sorted(self.end_offsets.items())},
        }


def _source(headers) -> Source | None:
    found = dict(headers or ())
    try:
        return Source(found[topics.HEADER_SOURCE_TOPIC].decode(), int(found[topics.HEADER_SOURCE_PARTITION]),
                      int(found[topics.HEADER_SOURCE_OFFSET]))
    except (KeyError, ValueError):
        return None


def _rejection_entry(value: bytes) -> dict:
    letter = orjson.loads(value)
    entry = {"event_id": letter["event_id"], "reason": letter["reason"]}
    if letter.get("account_id") is not None:
        entry["account_id"] = letter["account_id"]
    entry["detail"] = letter["detail"]
    entry["log"] = letter["log"]
    return entry


async def replay_ledger_log(settings: Settings, catalog: Catalog, limits: Limits, as_of: datetime,
                            on_progress: Callable[[Progress], None] | None = None) -> KafkaReplay:
    """Read ledger-log from the beginning up to its end offsets at start, through Processor."""
    topic = settings.topic(topics.LEDGER_LOG)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", max_poll_records=FETCH_RECORDS_MAX)
    await consumer.start()
    try:
        consumer._client.add_topic(topic)  # partitions_for_topic reads the metadata cache
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist on {settings.bootstrap_servers}")
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(assigned)).items()}
        starts = {tp.partition: offset for tp, offset in (await consumer.beginning_offsets(assigned)).items()}
        progress = Progress(total=sum(ends[p] - starts[p] for p in ends))
        replay = KafkaReplay({partition: DictStore() for partition in ends}, ends, [])
        await _read_until(consumer, replay, Processor(catalog, limits), as_of, progress, on_progress)
    finally:
        await consumer.stop()
    return replay


async def _read_until(consumer: AIOKafkaConsumer, replay: KafkaReplay, processor: Processor, as_of: datetime,
                      progress: Progress, on_progress: Callable[[Progress], None] | None) -> None:
    pending = {tp for tp in consumer.assignment() if replay.end_offsets[tp.partition] > 0}
    for tp in list(pending):
        if await consumer.position(tp) >= replay.end_offsets[tp.partition]:
            pending.discard(tp)
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=FETCH_RECORDS_MAX)
        for tp, messages in batch.items():
            end = replay.end_offsets[tp.partition]
            store = replay.stores[tp.partition]
            for message in messages:
                if message.offset >= end:
                    break
                emitted = processor.process(message.value or b"", message.key, LogPosition(tp.partition, message.offset),
                                            _source(message.headers), store, as_of)
                replay.rejected.extend(_rejection_entry(emit.value) for emit in emitted if emit.topic == topics.REJECTED)
                progress.events += 1
            if await consumer.position(tp) >= end:
                pending.discard(tp)
        if on_progress is not None:
            on_progress(progress)
