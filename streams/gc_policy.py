"""How the long-running processes use Python's cyclic garbage collector.

Why: the ledger allocates a few container objects per event (its fields, the account
record, the facts), and under a backlog a unit of work keeps tens of thousands of them
alive until it is durable. With CPython's default thresholds (700, 10, 10) the young
collections then trace those survivors again and again, and every full collection walks
the whole heap (faust, aiokafka, pydantic, the record cache): measured on the worker
under the pipeline backlog, 1.6-2.3 s of 16-26 s in the collector (7-14 % of the CPU),
and full collections of ~120 ms each, which land on the stop-service latency whole.
Almost nothing the ledger allocates forms reference cycles (reference counting frees it),
so the collector can run far less often without memory growing.

`tune(gen0)` raises the youngest generation's threshold (`TOKENPLAN_GC_GEN0_THRESHOLD`,
default 50,000 container allocations; 0 keeps Python's defaults). `freeze()` moves
everything alive now (modules, the app, the recovered state) to the permanent
generation, so later full collections do not walk it: called once, when the worker's
start-up and table recovery are over (`streams.worker.main`).

`bulk()`: a replay fold allocates millions of long-lived, acyclic objects; with the
default threshold the collector rescans them constantly (about half the replay time),
so replays run with a gen-0 threshold of `BULK_GEN0_THRESHOLD`.
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["BULK_GEN0_THRESHOLD", "GEN0_THRESHOLD", "bulk", "freeze", "tune"]

#: Container allocations (minus deallocations) between young collections, by default.
GEN0_THRESHOLD = 50_000
#: Gen-0 threshold of a replay fold (`bulk`).
BULK_GEN0_THRESHOLD = 200_000
#: Young collections per middle one, and middle collections per full one (CPython: 10, 10).
_OLDER_THRESHOLDS = (20, 100)


def tune(gen0: int = GEN0_THRESHOLD) -> None:
    """Collect less often (0: leave Python's defaults)."""
    if gen0 > 0:
        gc.set_threshold(gen0, *_OLDER_THRESHOLDS)


def freeze() -> None:
    """Everything alive now is never traced by the collector again (it is start-up state)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """A replay fold: the gen-0 threshold at BULK_GEN0_THRESHOLD, restored afterwards.
    Reference counting still frees everything; the collector still runs, less often."""
    previous = gc.get_threshold()
    gc.set_threshold(BULK_GEN0_THRESHOLD, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
