"""The usage policy fold: warnings, suspensions, grace, reinstatement, redelivery, replay."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from schemas.policy import POLICY_INPUT_ADAPTER
from streams.ledger.usage_policy import PolicyLimits, apply, decode_key_policy, encode_key_policy

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
LIMITS = PolicyLimits(warn_after=3, suspend_after=6, window_s=3600, grace_s=600)


def violation(i: int, at: datetime, unambiguous: bool = False, kind: str = "non_coding", key: str = "key_1"):
    return POLICY_INPUT_ADAPTER.validate_python({
        "type": "policy.violation", "event_id": f"v-{key}-{i}", "occurred_at": at.isoformat(), "account_id": "a",
        "key_id": key, "request_event_id": f"req-{i}", "cluster": "sgp", "protocol": "openai",
        "classification": {"kind": kind, "rule": "ua:python-requests" if unambiguous else "sdk-default+machine-cadence",
                           "rules_version": "v1", "unambiguous": unambiguous}})


def reinstated(i: int, at: datetime):
    return POLICY_INPUT_ADAPTER.validate_python({"type": "key.reinstated", "event_id": f"r-{i}",
                                                 "occurred_at": at.isoformat(), "account_id": "a", "key_id": "key_1",
                                                 "reason": "appeal accepted"})


def fold(events, limits=LIMITS):
    state, facts = None, []
    for event in events:
        state, new, _changed = apply(state, event, limits)
        facts += new
    return state, facts


def test_one_request_never_suspends_and_a_warning_comes_first():
    state, facts = fold([violation(0, T0, unambiguous=True)])
    assert facts == [] and not state.suspended
    state, facts = fold([violation(i, T0 + timedelta(seconds=i)) for i in range(6)])
    assert [f.type for f in facts] == ["policy.warning"], "ambiguous: the grace period has not passed"
    assert facts[0].violations == 3 and facts[0].rules == {"sdk-default+machine-cadence": 3}


def test_ambiguous_traffic_is_suspended_after_the_grace_period():
    events = [violation(i, T0 + timedelta(seconds=i)) for i in range(3)]
    events += [violation(10 + i, T0 + timedelta(minutes=11, seconds=i)) for i in range(3)]
    state, facts = fold(events)
    assert [f.type for f in facts] == ["policy.warning", "key.suspended"] and state.suspended
    suspension = facts[1]
    assert suspension.violations == 6 and suspension.request_event_ids[-1] == "req-12"
    assert suspension.event_id == "v-key_1-12:key.suspended", "deterministic ids: consumers dedupe"


def test_unambiguous_traffic_is_suspended_at_the_threshold_with_its_warning():
    state, facts = fold([violation(i, T0 + timedelta(seconds=i), unambiguous=True) for i in range(6)])
    assert [f.type for f in facts] == ["policy.warning", "key.suspended"] and state.suspended


def test_the_window_is_event_time():
    spread = [violation(i, T0 + timedelta(minutes=30 * i), unambiguous=True) for i in range(12)]
    state, facts = fold(spread)
    assert facts == [] and len(state.recent) == 2, "two per hour never reach the warning"


def test_coding_and_unknown_requests_count_nothing():
    state, facts = fold([violation(i, T0, kind="unknown") for i in range(10)])
    assert facts == [] and state.recent == ()


def test_a_redelivered_violation_is_a_no_op():
    event = violation(0, T0, unambiguous=True)
    state, _facts, _ = apply(None, event, LIMITS)
    again, facts, changed = apply(state, event, LIMITS)
    assert again == state and facts == [] and not changed


def test_reinstatement_restores_and_counts_start_again():
    events = [violation(i, T0 + timedelta(seconds=i), unambiguous=True) for i in range(6)]
    state, _ = fold(events)
    state, facts, changed = apply(state, reinstated(0, T0 + timedelta(minutes=1)), LIMITS)
    assert changed and not state.suspended and state.recent == () and facts[0].type == "key.reinstated"
    state, facts, _ = apply(state, violation(99, T0 + timedelta(minutes=2), unambiguous=True), LIMITS)
    assert facts == [] and len(state.recent) == 1


def test_the_table_value_round_trips_and_a_replay_gives_the_same_decisions():
    events = [violation(i, T0 + timedelta(seconds=i), unambiguous=True) for i in range(8)]
    state, facts = fold(events)
    assert decode_key_policy(encode_key_policy(state)) == state
    assert fold(events) == (state, facts)
