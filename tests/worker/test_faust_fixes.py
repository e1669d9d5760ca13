"""faust-streaming #606: never commit past a message that is still being processed."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.worker import faust_fixes

TP0 = TP("ledger-log", 0)


@dataclass(eq=False)
class InFlight:
    tp: TP
    offset: int
    acked: bool = False


class Offsets:
    """The consumer state `_new_offset` reads: acked and in-flight messages, gaps, the committed offset."""

    def __init__(self, committed: int | None, acked: list[int], in_flight: list[int] = ()) -> None:
        self._acked = defaultdict(list, {TP0: list(acked)})
        self._acked_index = defaultdict(set, {TP0: set(acked)})
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None, {TP0: committed})
        self._unacked_messages = {InFlight(TP0, offset) for offset in in_flight}


def test_unfixed_faust_commits_past_the_message_in_flight_at_the_head():
    state = Offsets(committed=100, acked=[101, 102], in_flight=[100])
    assert faust_fixes.ORIGINAL_NEW_OFFSET(state, TP0) == 103  # offset 100 lost at the next restart


def test_nothing_is_committed_while_the_head_message_is_in_flight():
    state = Offsets(committed=100, acked=[101, 102], in_flight=[100])
    assert faust_fixes.new_offset(state, TP0) is None
    state._unacked_messages = set()  # offset 100 acked: everything goes
    state._acked[TP0].append(100)
    assert faust_fixes.new_offset(state, TP0) == 103


def test_a_run_is_committed_up_to_the_message_in_flight_after_it():
    state = Offsets(committed=100, acked=[100, 101, 103], in_flight=[102])
    assert faust_fixes.new_offset(state, TP0) == 102
    assert state._acked[TP0] == [103]


def test_a_record_kafka_no_longer_has_is_still_committed_over_as_faust_does():
    # committed 100, but retention removed 100..4999: faust records the gap from 101
    # (never the committed offset itself) and commits past it; so does the fix.
    state = Offsets(committed=100, acked=[5000])
    asyncio.run(Consumer._add_gap(state, TP0, 101, 4999))
    assert faust_fixes.new_offset(state, TP0) == 5001


def test_apply_installs_the_fix_on_faust_consumers():
    faust_fixes.apply()
    assert Consumer._new_offset is faust_fixes.new_offset


async def test_the_worker_consumer_waits_for_data_as_long_as_the_setting_says_not_faust_1500_ms():
    from streams.config import Settings
    from streams.worker.main import build

    settings = Settings.from_env({"TOKENPLAN_TOPIC_PREFIX": "fx.", "TOKENPLAN_APP_ID": "fx",
                                  "TOKENPLAN_CONSUMER_FETCH_WAIT_MS": "33"})
    consumer = build(settings).wiring.app.consumer
    created = consumer._thread._create_worker_consumer(consumer.transport)
    try:
        assert created._fetch_max_wait_ms == 33
        unpatched = faust_fixes.ORIGINAL_CREATE_WORKER_CONSUMER(consumer._thread, consumer.transport)
        assert unpatched._fetch_max_wait_ms == 1500, "faust's hard-coded wait (the stall it causes: module doc)"
    finally:
        await created.stop()
