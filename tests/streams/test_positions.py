"""The ledger notices a ledger-log offset it did not expect (a gap or a rewind)."""
from __future__ import annotations

from streams.agents.store import check_position, clear_cache


def test_contiguous_offsets_pass_and_a_gap_or_rewind_names_the_expected_offset():
    clear_cache()
    assert check_position(3, 10) is None  # first offset seen since the rebalance
    assert check_position(3, 11) is None
    assert check_position(3, 15) == 12  # gap: 12..14 never applied here
    assert check_position(3, 14) == 16  # rewind
    assert check_position(4, 0) is None  # partitions are independent
    clear_cache()  # a rebalance forgets positions
    assert check_position(3, 100) is None
