"""Two fixes to faust-streaming 0.15.3: one the ledger's guarantees depend on, one its latency.

faust-streaming #606 (fix proposed in PR #707, not released): `Consumer._new_offset`
decides the offset to commit from the acked offsets. Its guard against a hole at the
head of the acked offsets lets exactly one missing offset through, on purpose: faust's
gap bookkeeping never records the committed offset itself as a gap (after a seek the
"last read" offset is set to the committed one), so a head hole of one is how a
record that Kafka no longer has (retention, compaction) looks. But it is also how a
record that *was* delivered and is still being processed looks: with committed offset
100, offset 100 in flight and 101, 102 acked, faust commits 103, and after a restart
offset 100 is never read again. The guide's "concurrency 1" avoids one way to get
there, not all (an event still in a take buffer while later ones were acked, say).

`apply()` keeps faust's computation and adds PR #707's cap: never commit past the
lowest offset of a message that was delivered to a stream and is not acked yet. A hole
Kafka made (never delivered, so never in flight) is still committed over, as before.

Latency: faust builds its consumer with `fetch_max_wait_ms=1500` (hard-coded), and
aiokafka keeps one fetch in flight per broker. When the partitions with data are still
buffered (faust had not drained them within aiokafka's 100 ms prefetch backoff), the
next fetch asks only for idle partitions (the clock's, the policy topic's), and the
broker holds it for the full 1.5 s; the ledger-log partitions wait behind it. Measured
under a 3,000 events/s live load: ledger-log records reached the applier 1.4-4 s
(mean) after the sequencer sent them, while a plain consumer of the same topic saw them
after 6 ms. `apply(fetch_max_wait_ms)` sets faust's consumer's wait instead (named
setting TOKENPLAN_CONSUMER_FETCH_WAIT_MS).
"""
from __future__ import annotations

from typing import Optional

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from faust.utils.functional import consecutive_numbers

FAUST_VERSION_FIXED = "0.15.3"
#: faust's own method, kept so a test can show the bug it fixes.
ORIGINAL_NEW_OFFSET = Consumer._new_offset
#: faust's own consumer factory (it passes fetch_max_wait_ms=1500).
ORIGINAL_CREATE_WORKER_CONSUMER = AIOKafkaConsumerThread._create_worker_consumer


def in_flight_offset(consumer, tp: TP) -> Optional[int]:
    """The lowest offset of `tp` delivered to a stream and not acked yet, if any."""
    offsets = [message.offset for message in list(consumer._unacked_messages)
               if message.tp == tp and not message.acked]
    return min(offsets) if offsets else None


def new_offset(self, tp: TP) -> Optional[int]:
    """faust's `_new_offset`, capped at the lowest offset still in flight."""
    acked = self._acked[tp]
    in_flight = in_flight_offset(self, tp) if acked else None
    if in_flight is not None and acked and min(acked) > in_flight:
        return None  # everything acked lies beyond a message still being processed
    offset = ORIGINAL_NEW_OFFSET(self, tp)
    if offset is None or in_flight is None or offset <= in_flight:
        return offset
    # The acked run passes an in-flight offset: commit up to it, and give the acked
    # offsets past it back, so that a later commit takes them when it is acked.
    returned = [o for o in range(in_flight + 1, offset)]
    self._acked[tp].extend(returned)
    self._acked[tp].sort()
    self._acked_index[tp].update(returned)
    return in_flight


def with_fetch_wait(fetch_max_wait_ms: int):
    """faust's worker-consumer factory, with the broker's wait for data set to `fetch_max_wait_ms`."""

    def create_worker_consumer(self, transport):
        consumer = ORIGINAL_CREATE_WORKER_CONSUMER(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by the fetcher it builds at start()
        return consumer

    return create_worker_consumer


def apply(fetch_max_wait_ms: int | None = None) -> None:
    """Install the fixes (idempotent); refuse a faust version they were not written for."""
    import faust

    if faust.__version__ != FAUST_VERSION_FIXED:
        raise RuntimeError(f"streams.worker.faust_fixes was written for faust-streaming {FAUST_VERSION_FIXED}, "
                           f"found {faust.__version__}: check whether #606 is fixed there, then update it")
    Consumer._new_offset = new_offset
    if fetch_max_wait_ms is not None:
        AIOKafkaConsumerThread._create_worker_consumer = with_fetch_wait(fetch_max_wait_ms)
