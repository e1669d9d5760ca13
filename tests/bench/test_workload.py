"""The benchmark and fault-test workload (bench.workload), without a broker:
its wire holds only the distinct events and identical retries of them, retries from far
back are there in the fault tests' default load, and a seed gives one workload."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from bench.workload import BUSY_ACCOUNTS, FAR_RETRY_GAP, generate

DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)
#: The fault tests' default load (tests/integration/test_faults.py make_load).
ACCOUNTS = [f"acc{index}" for index in range(200)]
EVENTS = 20_000


def far_gaps(wire: list[dict]) -> list[tuple[str, int]]:
    """(account, gap) of every resending: gap = other events of the account first sent
    between the event's first sending and this one (what a FIFO of applied ids sees)."""
    firsts: Counter[str] = Counter()  # account -> events first sent so far
    first_ordinal: dict[str, int] = {}
    gaps = []
    for event in wire:
        account_id, event_id = event["account_id"], event["event_id"]
        if event_id in first_ordinal:
            gaps.append((account_id, firsts[account_id] - first_ordinal[event_id] - 1))
        else:
            first_ordinal[event_id] = firsts[account_id]
            firsts[account_id] += 1
    return gaps


def test_the_wire_is_the_distinct_usage_plus_identical_retries():
    workload = generate(EVENTS, ACCOUNTS, DAY, seed=3)
    by_id = {event["event_id"]: event for event in workload.usage}
    assert len(by_id) == len(workload.usage) == EVENTS
    assert all(by_id.get(event["event_id"]) == event for event in workload.wire)  # same id: same content
    assert {event["event_id"] for event in workload.wire} == set(by_id)  # none lost
    assert len(workload.wire) > len(workload.usage)
    assert [plan["account_id"] for plan in workload.plans] == ACCOUNTS


def test_busy_accounts_are_retried_from_further_back_than_512_of_their_own_events():
    workload = generate(EVENTS, ACCOUNTS, DAY, seed=3)
    counts = Counter(event["account_id"] for event in workload.usage)
    assert len(workload.busy) == BUSY_ACCOUNTS
    assert all(counts[account_id] > 1_000 for account_id in workload.busy)
    far = [(account_id, gap) for account_id, gap in far_gaps(workload.wire) if gap >= FAR_RETRY_GAP]
    assert FAR_RETRY_GAP > 512
    assert len(far) >= 60, far
    assert {account_id for account_id, _gap in far} == set(workload.busy)  # every busy account, only they


def test_far_back_retries_in_every_seed_of_the_fault_tests():
    for seed in range(10):  # the fault tests draw a random seed: retries from far back in each
        gaps = far_gaps(generate(EVENTS, ACCOUNTS, DAY, seed=seed).wire)
        assert sum(gap >= FAR_RETRY_GAP for _account, gap in gaps) >= 100, seed


def test_a_seed_gives_one_workload():
    first, again = generate(5_000, ACCOUNTS, DAY, seed=11), generate(5_000, ACCOUNTS, DAY, seed=11)
    assert (first.plans, first.usage, first.wire, first.busy) == (again.plans, again.usage, again.wire, again.busy)
    other = generate(5_000, ACCOUNTS, DAY, seed=12)
    assert [e["event_id"] for e in other.wire] != [e["event_id"] for e in first.wire]
    assert [e["account_id"] for e in other.usage] != [e["account_id"] for e in first.usage]


def test_without_busy_accounts_the_load_is_uniform_and_small_accounts_get_no_far_retries():
    workload = generate(EVENTS, ACCOUNTS, DAY, seed=3, busy_accounts=0)
    assert workload.busy == []
    assert max(Counter(event["account_id"] for event in workload.usage).values()) < FAR_RETRY_GAP
    assert all(gap < FAR_RETRY_GAP for _account, gap in far_gaps(workload.wire))
