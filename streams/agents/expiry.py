"""In-memory index of when each account's current package ends, per partition.

Expiry is time passing with no event: the ledger agent, on each clock tick, asks the
index which accounts are due instead of scanning every account. The index is a cache
of table state: it is rebuilt from the table (one scan) the first time a partition
ticks after an assignment, and cleared on every rebalance.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime


class ExpiryIndex:
    """(valid_until, account_id) min-heaps per partition."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[datetime, str]]] = {}

    def clear(self) -> None:
        self._heaps.clear()

    def is_built(self, partition: int) -> bool:
        return partition in self._heaps

    def build(self, partition: int, entries: Iterable[tuple[datetime, str]]) -> None:
        heap = list(entries)
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def note(self, partition: int, account_id: str, valid_until: datetime | None) -> None:
        """Remember that `account_id`'s view may change at `valid_until`."""
        heap = self._heaps.get(partition)
        if heap is not None and valid_until is not None:
            heapq.heappush(heap, (valid_until, account_id))

    def due(self, partition: int, now: datetime) -> list[str]:
        """Accounts whose noted instant is <= now (each once), removed from the index."""
        heap = self._heaps.get(partition, [])
        due: dict[str, None] = {}
        while heap and heap[0][0] <= now:
            due[heapq.heappop(heap)[1]] = None
        return list(due)
