"""The worker's runtime state, owned in one place: per partition, created on first use after
an assignment, dropped when the partition is revoked (the unit in flight excepted).

Why one owner: the decoded-record cache, the expiry index and the unit of work in flight
are only exact while this worker owns the partition (only the owner writes its keys).
Keeping them per partition, behind one object the applier, the clock and the web views
are handed, makes "dropped on revoke" one method, and every bound is named here.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.config import Settings
from streams.processing.expiry import ExpiryIndex
from streams.processing.records import AccountRecord
from streams.processing.state_store import RecordCache


@dataclass
class PartitionRuntime:
    """What this worker keeps in memory for one partition it owns."""

    records: RecordCache
    expiry: ExpiryIndex = field(default_factory=ExpiryIndex)
    #: The records the unit in flight wrote, from the moment it is applied until it is
    #: durable (then they are in `records`): lookups answer from them. Why: the ledger-log
    #: records of the unit are durable already and applying them is deterministic, so what
    #: they decided is what any worker re-applying them decides; a lookup need not wait
    #: for the unit's facts and changelog round trips (stop-service latency). The
    #: processor never reads these: the partition's next unit starts once this one is durable.
    applied: dict[bytes, AccountRecord] = field(default_factory=dict)


class WorkerRuntime:
    """Partition runtimes of this worker, and what /health reports."""

    def __init__(self, settings: Settings) -> None:
        #: Records cached per partition: TOKENPLAN_RECORD_CACHE_MAX shared over the partitions.
        self.records_per_partition = max(1, settings.record_cache_max // settings.partitions)
        self._partitions: dict[int, PartitionRuntime] = {}
        #: Each partition's unit of work being made durable (at most one: the next one reads
        #: its state). Kept across a revoke: a partition given back must wait for it too.
        self.in_flight: dict[int, asyncio.Future] = {}
        #: Records of each partition waiting for its unit in flight (the next unit takes them).
        self.waiting: dict[int, list] = {}
        self.consumed: Counter[str] = Counter()

    def partition(self, partition: int) -> PartitionRuntime:
        """The runtime of `partition`, created on first use after an assignment."""
        runtime = self._partitions.get(partition)
        if runtime is None:
            runtime = self._partitions[partition] = PartitionRuntime(RecordCache(self.records_per_partition))
        return runtime

    def known(self, partition: int) -> PartitionRuntime | None:
        """The runtime of `partition` if it exists (lookups do not create one)."""
        return self._partitions.get(partition)

    def revoke(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the runtimes of revoked partitions (all when None): they may move to another worker."""
        if partitions is None:
            self._partitions.clear()
            return
        for partition in partitions:
            self._partitions.pop(partition, None)

    def count(self, topic: str, events: int = 1) -> None:
        self.consumed[topic] += events

    def snapshot(self) -> dict[str, int]:
        return dict(self.consumed)
