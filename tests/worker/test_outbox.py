"""Outbox: partition choice, batch splitting and the last offsets it reports.

The producer here is a recording stand-in with aiokafka's batch API; the real producer
and broker are exercised by every integration test (the worker sends through Outbox).
"""
from __future__ import annotations

import asyncio

import pytest

from streams.worker.outbox import Outbox
from streams.ledger.partitioning import key_partition


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity, self.records = capacity, []

    def append(self, *, timestamp, key, value, headers):
        if self.records and len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, list(headers)))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class RecordingProducer:
    """Writes each batch at the next offset of its partition, like a broker's log."""

    def __init__(self, batch_capacity: int = 1000) -> None:
        self.batch_capacity = batch_capacity
        self.logs: dict[tuple[str, int], list] = {}

    def create_batch(self) -> Batch:
        return Batch(self.batch_capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int):
        log = self.logs.setdefault((topic, partition), [])
        future = asyncio.get_running_loop().create_future()
        future.set_result(type("Metadata", (), {"offset": len(log)})())
        log.extend(batch.records)
        return future


def test_keyed_records_go_to_the_murmur2_partition_in_order_and_unkeyed_ones_where_told():
    outbox = Outbox(partitions=8)
    other = (key_partition(b"acc-1", 8) + 1) % 8
    outbox.add("t", b"acc-1", b"first")
    outbox.add("t", None, b"dead letter", partition=other, headers=[("h", b"v")])
    outbox.add("t", b"acc-1", b"second")
    producer = RecordingProducer()
    last = asyncio.run(outbox.send(producer))
    keyed = ("t", key_partition(b"acc-1", 8))
    assert [value for _, value, _ in producer.logs[keyed]] == [b"first", b"second"]
    assert producer.logs[("t", other)] == [(None, b"dead letter", [("h", b"v")])]
    assert last == {keyed: 1, ("t", other): 0} and len(outbox) == 0


def test_full_batches_are_split_and_the_last_offset_counts_every_record():
    outbox = Outbox(partitions=1)
    for index in range(7):
        outbox.add("t", b"k", b"%d" % index)
    producer = RecordingProducer(batch_capacity=3)
    assert asyncio.run(outbox.send(producer)) == {("t", 0): 6}
    assert [value for _, value, _ in producer.logs[("t", 0)]] == [b"%d" % i for i in range(7)]


def test_an_unkeyed_record_without_a_partition_is_refused():
    with pytest.raises(ValueError, match="needs a partition"):
        Outbox(partitions=8).add("t", None, b"x")
