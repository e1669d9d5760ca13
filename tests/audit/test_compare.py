"""The audit's comparison of replayed and live views (pure)."""
from __future__ import annotations

from streams.audit.compare import compare, what_if

VIEW = {"status": "active", "tier": "lite", "period": "monthly", "credits_limit": "4100000000",
        "credits_used": "10", "credits_remaining": "4099999990", "valid_from": "2026-06-01T00:00:00Z",
        "valid_until": "2026-07-01T00:00:00Z"}


def live(view: dict, partition: int = 0, offset: int = 5) -> dict:
    return {**view, "allowed": True, "as_of": {"log": {"partition": partition, "offset": offset}}}


def test_equal_accounts_pass():
    report = compare({"a": VIEW}, {"a": live(VIEW)}, {"0": 10})
    assert report.ok and report.summary() == {"accounts_checked": 1, "equal": 1, "live_ahead": 0, "different": 0, "ok": True}


def test_a_different_balance_is_reported_field_by_field():
    changed = {**VIEW, "credits_used": "20", "credits_remaining": "4099999980"}
    report = compare({"a": VIEW}, {"a": live(changed)}, {"0": 10})
    assert not report.ok
    [diff] = report.diffs
    assert diff.kind == "different"
    assert diff.to_dict()["fields"]["credits_used"] == {"replay": "10", "live": "20"}


def test_live_past_the_replay_end_is_not_a_difference():
    changed = {**VIEW, "credits_used": "20"}
    report = compare({"a": VIEW}, {"a": live(changed, offset=10)}, {"0": 10})
    assert report.ok and report.live_ahead == 1


def test_accounts_missing_on_either_side():
    report = compare({"a": VIEW}, {"a": None, "b": live(VIEW, offset=3)}, {"0": 10})
    assert sorted((d.account_id, d.kind) for d in report.diffs) == [("a", "missing_live"), ("b", "missing_replay")]


def test_what_if_reports_only_accounts_that_change():
    cheaper = {**VIEW, "credits_used": "8"}
    assert what_if({"a": VIEW, "b": VIEW}, {"a": cheaper, "b": VIEW}) == {
        "a": {"credits_used": "10", "credits_used_what_if": "8", "delta": "-2"}}
