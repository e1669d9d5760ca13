"""Read a whole topic, from the beginning to its end offsets when the read starts.

What replays and audits need: a bounded, complete snapshot of a log (records written
after the start are left for the next run), delivered partition by partition in offset
order. No consumer group: nothing is committed, nothing live is touched.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

#: Records fetched per poll.
FETCH_RECORDS_MAX = 5000


@dataclass
class ReadProgress:
    """Records handled so far, their rate, and how many are left before the end offsets."""

    events: int = 0
    total: int = 0
    started_s: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started_s, 1e-9)

    @property
    def lag(self) -> int:
        return max(self.total - self.events, 0)


async def read_topic(bootstrap_servers: str, topic: str,
                     handle: Callable[[ConsumerRecord], None],
                     on_progress: Callable[[ReadProgress], None] | None = None,
                     on_start: Callable[[dict[int, int]], None] | None = None) -> dict[int, int]:
    """Call `handle` on every record of `topic` up to the end offsets at start; return them.

    `on_start` receives the end offsets before the first record. LookupError when the
    topic does not exist.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_poll_records=FETCH_RECORDS_MAX)
    await consumer.start()
    try:
        consumer._client.add_topic(topic)  # partitions_for_topic reads the metadata cache
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist on {bootstrap_servers}")
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(assigned)).items()}
        starts = {tp.partition: offset for tp, offset in (await consumer.beginning_offsets(assigned)).items()}
        if on_start is not None:
            on_start(ends)
        progress = ReadProgress(total=sum(ends[p] - starts[p] for p in ends))
        await _read_until(consumer, ends, handle, progress, on_progress)
    finally:
        await consumer.stop()
    return ends


async def _read_until(consumer: AIOKafkaConsumer, ends: dict[int, int], handle: Callable[[ConsumerRecord], None],
                      progress: ReadProgress, on_progress: Callable[[ReadProgress], None] | None) -> None:
    pending = set()
    for tp in consumer.assignment():
        if await consumer.position(tp) < ends[tp.partition]:
            pending.add(tp)
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=FETCH_RECORDS_MAX)
        for tp, messages in batch.items():
            end = ends[tp.partition]
            for message in messages:
                if message.offset >= end:
                    break
                handle(message)
                progress.events += 1
            if await consumer.position(tp) >= end:
                pending.discard(tp)
        if on_progress is not None:
            on_progress(progress)
