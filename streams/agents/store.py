"""The faust-table PartitionStore: one partition's accounts and its partition record.

A put updates the decoded-record cache at once (lookups see it) and marks the key
dirty; `flush` queues each dirty key once as a changelog record, so one batch of events
costs one table write per touched account. Only after Kafka has the changelog (and the
batch's facts) does `write_local` put the records into the local RocksDB store: local
state is never ahead of the changelog and the outputs, so a worker killed in between
applies the batch again on restart and publishes its facts again (at least once)
instead of finding it applied and losing them. faust's RocksDB store picks the
partition of a write from the *current* event, so the ledger agent writes a
partition's store with one of that partition's events as current
(`streams.agents.batching.in_event_context`); the changelog record goes to the same
partition: the ledger-log partition, which is also the partition of every account key
written here (the sequencer keys ledger-log by account_id).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from aiokafka.partitioner import murmur2
from faust.types import TP

from streams.agents.records import AccountRecord, PartitionRecord
from streams.ledger import Limits

if TYPE_CHECKING:
    from streams.agents.outbox import Outbox


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_key(partition: int) -> bytes:
    return b"p%d" % partition


#: Decoded account records of the partitions this worker owns (decoding a record costs
#: far more than the rules applied to it). Only the owner writes an account, so the
#: cache is exact until a rebalance moves partitions; it is cleared on every rebalance.
_records: dict[bytes, AccountRecord] = {}
#: Decoded partition records (the same reasoning: only the owner writes them), read on
#: every event for its global refreshes. Never changed in place: a change puts a new one.
_partition_records: dict[bytes, PartitionRecord] = {}


def _queue(table, key: bytes, value: bytes, partition: int, outbox: Outbox) -> tuple:
    outbox.add(table.changelog_topic.get_topic_name(), key, value, partition)
    return table, key, value


def mark_persisted(tables, delivered: dict[tuple[str, int], int]) -> None:
    """Tell each table's store the changelog offset its local data now includes.

    faust keeps this offset in RocksDB so that a restart only reads the changelog past
    it; recording it only after Kafka acknowledged the write keeps it from running ahead
    of the changelog (a lower offset only means a longer recovery).
    """
    for table in tables:
        topic = table.changelog_topic.get_topic_name()
        for (delivered_topic, partition), offset in delivered.items():
            if delivered_topic == topic:
                table.data.set_persisted_offset(TP(topic, partition), offset)


#: The next ledger-log offset expected per partition since the last rebalance. Offsets
#: of ledger-log are contiguous (no transactions, no compaction), so anything else
#: means faust delivered out of order or skipped records: logged, never hidden.
_next_offsets: dict[int, int] = {}


def check_position(partition: int, offset: int) -> int | None:
    """Note that `offset` of `partition` is being applied; the expected offset when it differs."""
    expected = _next_offsets.get(partition)
    _next_offsets[partition] = offset + 1
    return None if expected is None or expected == offset else expected


def clear_cache() -> None:
    _records.clear()
    _partition_records.clear()
    _next_offsets.clear()


def read_record(accounts, key: bytes, limits: Limits) -> AccountRecord | None:
    """The account record for `key`, from the cache or the table."""
    record = _records.get(key)
    if record is None:
        raw = accounts.get(key)
        if raw is None:
            return None
        record = _records[key] = AccountRecord.from_bytes(raw, limits)
    return record


class TableStore:
    """PartitionStore over the accounts and partitions tables, for one partition."""

    def __init__(self, accounts, partitions_table, partition: int, partitions: int, limits: Limits) -> None:
        self.accounts = accounts
        self.partitions_table = partitions_table
        self.partition = partition
        self.partitions = partitions
        self.limits = limits
        self._dirty: dict[bytes, AccountRecord] = {}
        self._dirty_partition: PartitionRecord | None = None
        self._unwritten: list[tuple] = []  # (table, key, value) queued, not yet in RocksDB

    def get(self, account_id: str) -> AccountRecord | None:
        return read_record(self.accounts, account_id.encode("utf-8"), self.limits)

    def put(self, account_id: str, record: AccountRecord) -> None:
        key = account_id.encode("utf-8")
        self._dirty[key] = record
        _records[key] = record

    def flush(self, outbox: Outbox) -> int:
        """Queue every record put since the last flush, once each, for its changelog.

        The caller sends the outbox, then calls `write_local` and `mark_persisted`.
        Returns the number of records queued.
        """
        for key, record in self._dirty.items():
            self._unwritten.append(_queue(self.accounts, key, record.to_bytes(), self.partition, outbox))
        self._dirty.clear()
        if self._dirty_partition is not None:
            self._unwritten.append(_queue(self.partitions_table, partition_key(self.partition),
                                          self._dirty_partition.to_bytes(), self.partition, outbox))
            self._dirty_partition = None
        return len(self._unwritten)

    def write_local(self) -> None:
        """Put the flushed records into the local RocksDB store, once Kafka has their changelog.

        What faust's `table[key] = value` does locally, without its per-write producer
        machinery (see `streams.agents.outbox`). Must run with an event of this store's
        partition as faust's current event (RocksDB picks its partition from it).
        """
        for table, key, value in self._unwritten:
            table.data[key] = value
        self._unwritten.clear()

    def account_ids(self) -> Iterable[str]:
        return list(self._own_keys())

    def _own_keys(self) -> Iterator[str]:
        for key in self.accounts.keys():
            if key_partition(key, self.partitions) == self.partition:
                yield key.decode("utf-8")

    def get_partition(self) -> PartitionRecord:
        key = partition_key(self.partition)
        record = _partition_records.get(key)
        if record is None:
            raw = self.partitions_table.get(key)
            record = PartitionRecord() if raw is None else PartitionRecord.from_bytes(raw)
            _partition_records[key] = record
        return record

    def put_partition(self, record: PartitionRecord) -> None:
        self._dirty_partition = record
        _partition_records[partition_key(self.partition)] = record
