"""Which partition an account lives on: Kafka's default (murmur2) partitioner, in pure Python.

Why the core needs it: the lateness rule compares a usage event with the event-time
high-water mark of its *partition* (the ledger-log partition the live worker applies it
on), so a replay from a file must group accounts exactly as the worker does. This is the
partitioner of the Java client, aiokafka and faust (`murmur2(key) & 0x7fffffff % n`),
written here so the pure core imports no Kafka client.
"""
from __future__ import annotations

__all__ = ["account_partition", "key_partition", "murmur2"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` (org.apache.kafka.common.utils.Utils.murmur2)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    full = length - length % 4
    for i in range(0, full, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length % 4
    if extra >= 3:
        h ^= data[full + 2] << 16
    if extra >= 2:
        h ^= data[full + 1] << 8
    if extra >= 1:
        h ^= data[full]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


_PARTITIONS: dict[tuple[str | bytes, int], int] = {}
#: Bound of the memo of both functions below (keys repeat on every event of an account).
_PARTITIONS_MAX = 1 << 20


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (memoized)."""
    memo_key = (key, partitions)
    partition = _PARTITIONS.get(memo_key)
    if partition is None:
        if len(_PARTITIONS) >= _PARTITIONS_MAX:
            _PARTITIONS.clear()
        partition = _PARTITIONS[memo_key] = (murmur2(key) & 0x7FFFFFFF) % partitions
    return partition


def account_partition(account_id: str, partitions: int) -> int:
    """The ledger-log partition of `account_id` (the sequencer keys ledger-log by it)."""
    return key_partition(account_id.encode("utf-8"), partitions)
