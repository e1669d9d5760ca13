"""faust-streaming #606: never commit past an offset that was not acked."""
from __future__ import annotations

from collections import defaultdict

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import faust_fixes

TP0 = TP("ledger-log", 0)


class Offsets:
    """The consumer state `_new_offset` reads: acked offsets, gaps, the committed offset."""

    def __init__(self, committed: int | None, acked: list[int], gaps: list[tuple[int, int]] = ()) -> None:
        self._acked = defaultdict(list, {TP0: list(acked)})
        self._acked_index = defaultdict(set, {TP0: set(acked)})
        self._gap = defaultdict(IntervalTree, {TP0: IntervalTree.from_tuples(gaps)})
        self._committed_offset = defaultdict(lambda: None, {TP0: committed})


def test_the_unfixed_method_commits_past_an_offset_never_acked():
    assert faust_fixes.ORIGINAL_NEW_OFFSET(Offsets(committed=100, acked=[101, 102]), TP0) == 103  # offset 100 would be lost


def test_nothing_is_committed_while_the_committed_offset_is_not_acked():
    assert faust_fixes.new_offset(Offsets(committed=100, acked=[101, 102]), TP0) is None
    assert faust_fixes.new_offset(Offsets(committed=0, acked=[1]), TP0) is None


def test_a_contiguous_run_from_the_committed_offset_is_committed_up_to_its_first_hole():
    offsets = Offsets(committed=100, acked=[100, 101, 102, 104])
    assert faust_fixes.new_offset(offsets, TP0) == 103
    assert offsets._acked[TP0] == [104]


def test_offsets_kafka_never_delivers_are_gaps_and_do_not_hold_the_commit_back():
    # 100 and 101 are compacted away (faust records them as a gap): commit past them.
    assert faust_fixes.new_offset(Offsets(committed=100, acked=[102, 103], gaps=[(100, 102)]), TP0) == 104


def test_apply_installs_the_fix_on_faust_consumers():
    faust_fixes.apply()
    assert Consumer._new_offset is faust_fixes.new_offset
