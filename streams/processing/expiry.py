"""When each account's view of one partition next changes with no event (a package starts or ends).

Expiry is time passing with no event: on each clock tick the applier asks the index
which accounts are due instead of scanning every account. The index is a cache of
table state: built from the table (one scan) the first time its partition ticks after
an assignment, dropped with the partition on revoke. It holds at most one entry per
(account, instant): noting the same instant again (every event of an account notes its
package's end) adds nothing, so it grows with accounts and packages, not with events.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime


class ExpiryIndex:
    """A (instant, account_id) min-heap with a set that keeps each pair once."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] | None = None
        self._noted: set[tuple[datetime, str]] = set()

    @property
    def is_built(self) -> bool:
        return self._heap is not None

    def build(self, entries: Iterable[tuple[datetime, str]]) -> None:
        self._noted = set(entries)
        self._heap = list(self._noted)
        heapq.heapify(self._heap)

    def note(self, account_id: str, instant: datetime | None) -> None:
        """Remember that `account_id`'s view may change at `instant` (ignored before `build`)."""
        if self._heap is None or instant is None:
            return
        entry = (instant, account_id)
        if entry not in self._noted:
            self._noted.add(entry)
            heapq.heappush(self._heap, entry)

    def due(self, now: datetime) -> list[str]:
        """Accounts whose noted instant is <= now (each once), removed from the index."""
        heap = self._heap or []
        due: dict[str, None] = {}
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            self._noted.discard(entry)
            due[entry[1]] = None
        return list(due)

    def __len__(self) -> int:
        return len(self._heap or ())
