"""In-memory index of when each account's current package ends, per partition.

Expiry is time passing with no event: the ledger agent, on each clock tick, asks the
index which accounts are due instead of scanning every account. The index is a cache
of table state: it is rebuilt from the table (one scan) the first time a partition
ticks after an assignment, and cleared on every rebalance. It holds at most one entry
per (account, instant): noting the same instant again (every event of an account notes
its package's end) adds nothing, so it grows with accounts and packages, not events.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime


class ExpiryIndex:
    """(valid_until, account_id) min-heaps per partition."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[datetime, str]]] = {}
        self._noted: dict[int, set[tuple[datetime, str]]] = {}

    def clear(self) -> None:
        self._heaps.clear()
        self._noted.clear()

    def is_built(self, partition: int) -> bool:
        return partition in self._heaps

    def build(self, partition: int, entries: Iterable[tuple[datetime, str]]) -> None:
        noted = set(entries)
        heap = list(noted)
        heapq.heapify(heap)
        self._heaps[partition] = heap
        self._noted[partition] = noted

    def note(self, partition: int, account_id: str, valid_until: datetime | None) -> None:
        """Remember that `account_id`'s view may change at `valid_until`."""
        heap = self._heaps.get(partition)
        if heap is None or valid_until is None:
            return
        entry = (valid_until, account_id)
        noted = self._noted[partition]
        if entry not in noted:
            noted.add(entry)
            heapq.heappush(heap, entry)

    def due(self, partition: int, now: datetime) -> list[str]:
        """Accounts whose noted instant is <= now (each once), removed from the index."""
        heap = self._heaps.get(partition, [])
        noted = self._noted.get(partition, set())
        due: dict[str, None] = {}
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            noted.discard(entry)
            due[entry[1]] = None
        return list(due)

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._heaps.values())
