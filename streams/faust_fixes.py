"""A fix to faust-streaming 0.15.3 that the ledger's guarantees depend on.

faust-streaming #606 (fix proposed in PR #707, not released): `Consumer._new_offset`
decides the offset to commit from the acked offsets, and its guard against a gap at the
head of the acked offsets is off by one: with committed offset 100 and acked offsets
101, 102 it commits 103, past offset 100, which was never acked (still in flight, or
skipped by faust during a rebalance). After a restart offset 100 is never read again:
a usage event is lost. The guide's "concurrency 1" avoids one way to get there, not all.

`apply()` replaces the method with the same computation and a strict guard: nothing is
committed while the lowest acked offset is above the committed one. Offsets that are
legitimately missing (compaction, transaction markers, retention) are recorded by faust
as gaps and merged in before the guard, exactly as in the original.
"""
from __future__ import annotations

from typing import Optional

from faust.transport.consumer import Consumer
from faust.types import TP
from faust.utils.functional import consecutive_numbers

FAUST_VERSION_FIXED = "0.15.3"
#: faust's own method, kept so a test can show the bug it fixes.
ORIGINAL_NEW_OFFSET = Consumer._new_offset


def new_offset(self, tp: TP) -> Optional[int]:
    """The offset to commit for `tp`: one past the acked run that starts at the committed offset."""
    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:  # offsets Kafka will never deliver count as acked (as in faust)
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda interval: interval.begin)
        if candidates:
            filled: list[int] = []
            for interval in candidates:
                filled.extend(range(interval.begin, interval.end))
            acked.extend(filled)
            gap_for_tp.chop(0, max(filled[-1], max_offset + 1))
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and acked[0] > committed:
        return None  # the fix: offset `committed` is not acked yet, so nothing past it is committed
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return batch[-1] + 1


def apply() -> None:
    """Install the fix (idempotent); refuse a faust version it was not written for."""
    import faust

    if faust.__version__ != FAUST_VERSION_FIXED:
        raise RuntimeError(f"streams.faust_fixes was written for faust-streaming {FAUST_VERSION_FIXED}, "
                           f"found {faust.__version__}: check whether #606 is fixed there, then update it")
    Consumer._new_offset = new_offset
