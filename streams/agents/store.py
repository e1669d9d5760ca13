"""The faust-table PartitionStore: one partition's accounts and its partition record.

Writes go through `table[key] = value`, so faust sends them to the changelog partition
of the event being processed: the ledger-log partition, which is also the partition
of every account key written here (the sequencer keys ledger-log by account_id).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from aiokafka.partitioner import murmur2

from streams.agents.records import AccountRecord, PartitionRecord
from streams.ledger import Limits


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

    def get(self, account_id: str) -> AccountRecord | None:
        return read_record(self.accounts, account_id.encode("utf-8"), self.limits)

    def put(self, account_id: str, record: AccountRecord) -> None:
        key = account_id.encode("utf-8")
        self.accounts[key] = record.to_bytes()
        _records[key] = record

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
        key = partition_key(self.partition)
        self.partitions_table[key] = record.to_bytes()
        _partition_records[key] = record
