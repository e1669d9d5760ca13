"""account.py: step over one account: packages, upgrades, renewals, refresh, exhaustion, duplicates."""
from datetime import timedelta
from decimal import Decimal

from schemas.outputs import BalanceChanged, QuotaExhausted, QuotaRestored
from streams.ledger import account_view, step
from streams.ledger.memory import InMemoryEventMemory
from streams.ledger.limits import Limits
from tests.ledger.conftest import ev, purchase, refresh, renew, run, upgrade, usage, utc

LITE = 4_100_000_000


def used(state, as_of=utc(2026, 5, 20)):
    return Decimal(account_view(state, as_of)["credits_used"])


def test_product_example_lite_10m_pro_miss(catalog):
    state, results = run(catalog, purchase(), usage(miss=10_000_000))
    view = account_view(state, utc(2026, 5, 3))
    assert view["credits_used"] == "3000000000" and view["credits_remaining"] == "1100000000"
    fact = results[-1].facts[0]
    assert isinstance(fact, BalanceChanged) and fact.credits_charged == Decimal(3_000_000_000)


def test_purchase_opens_calendar_month(catalog):
    state, _ = run(catalog, purchase(at="2026-01-31T10:00:00Z"))
    assert state.packages[0].valid_until == utc(2026, 2, 28, 10)
    annual, _ = run(catalog, purchase(at="2026-01-31T10:00:00Z", period="annual"))
    assert annual.packages[0].valid_until == utc(2027, 1, 31, 10)
    assert annual.packages[0].credits_limit_micro == 49_200_000_000 * 10**6


def test_offset_timestamps_normalize(catalog):
    # 2026-05-01T08:00:00+08:00 is 00:00Z; 00:30 Beijing is off-peak (16:30Z the day before).
    state, results = run(catalog, purchase(at="2026-05-01T08:00:00+08:00"),
                         usage(at="2026-05-03T00:30:00+08:00", hit=1, model="MiMo-V2.5"))
    assert state.packages[0].valid_from == utc(2026, 5, 1)
    assert results[-1].facts[0].credits_charged == Decimal("1.6")


def test_one_package_at_a_time(catalog):
    state, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"),
                         purchase(at="2026-05-31T23:59:59Z", tier="pro"))
    assert results[-1].rejection.reason == "package_already_valid"
    state, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"),
                         purchase(at="2026-06-01T00:00:00Z", tier="max"))
    assert results[-1].rejection is None and state.packages[-1].tier == "max"


def test_plan_event_before_latest_package_is_out_of_order(catalog):
    _, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"), purchase(at="2026-04-01T00:00:00Z"))
    assert results[-1].rejection.reason == "plan_event_out_of_order"


def test_renewal_starts_where_previous_ended(catalog):
    state, results = run(catalog, purchase(at="2026-01-31T10:00:00Z"), renew(at="2026-02-28T09:00:00Z"),
                         renew(at="2026-03-31T09:00:00Z"))
    assert [(p.valid_from, p.valid_until) for p in state.packages] == [
        (utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)), (utc(2026, 2, 28, 10), utc(2026, 3, 31, 10)),
        (utc(2026, 3, 31, 10), utc(2026, 4, 30, 10))]
    assert all(r.rejection is None for r in results)


def test_renewal_refusals(catalog):
    _, results = run(catalog, renew())
    assert results[-1].rejection.reason == "no_package_to_renew"
    _, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"), renew(at="2026-07-15T00:00:00Z"))
    assert results[-1].rejection.reason == "renewal_lapsed"


def test_upgrade_closes_and_opens(catalog):
    state, results = run(catalog, purchase(), usage(at="2026-05-02T10:00:00Z", miss=1000),
                         upgrade(at="2026-05-10T00:00:00Z", tier="pro", period="annual"))
    old, new = state.packages
    assert old.valid_until == utc(2026, 5, 10) and new.valid_from == utc(2026, 5, 10)
    assert new.valid_until == utc(2027, 5, 10) and new.used_micro == 0
    assert new.credits_limit_micro == 456_000_000_000 * 10**6
    assert results[-1].rejection is None


def test_upgrade_refusals(catalog):
    for tier, reason in (("lite", "downgrade_not_allowed"), ("standard", "downgrade_not_allowed")):
        _, results = run(catalog, purchase(tier="standard"), upgrade(tier=tier))
        assert results[-1].rejection.reason == reason
    _, results = run(catalog, purchase(tier="max"), upgrade(tier="max"))
    assert results[-1].rejection.reason == "upgrade_from_max"
    _, results = run(catalog, upgrade())
    assert results[-1].rejection.reason == "no_valid_package"


def test_late_usage_belongs_to_its_period_after_upgrade(catalog):
    # usage at 05-05 arrives after the upgrade at 05-10: charged to the lite period
    state, _ = run(catalog, purchase(), upgrade(at="2026-05-10T00:00:00Z"),
                   usage(at="2026-05-05T00:00:00Z", miss=1000))
    assert state.packages[0].used_micro == 300_000 * 10**6 and state.packages[1].used_micro == 0


def test_usage_after_upgrade_instant_moves_to_new_package(catalog):
    # usage at 05-12 was applied before the upgrade at 05-10 arrived: it belongs to the new one
    state, _ = run(catalog, purchase(), usage(at="2026-05-12T00:00:00Z", miss=1000),
                   upgrade(at="2026-05-10T00:00:00Z"))
    assert state.packages[0].used_micro == 0 and state.packages[1].used_micro == 300_000 * 10**6


def test_usage_outside_every_package_is_rejected(catalog):
    _, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"), usage(at="2026-04-30T23:59:59Z"),
                     usage(at="2026-06-01T00:00:00Z"))
    assert [r.rejection.reason for r in results[1:]] == ["usage_outside_package"] * 2


def test_unknown_model_rejected_not_free(catalog):
    state, results = run(catalog, purchase(), usage(model="gpt-4", miss=5))
    assert results[-1].rejection.reason == "unknown_model"
    assert state.packages[0].used_micro == 0


def test_tts_usage_recorded_at_zero_credits(catalog):
    memory = InMemoryEventMemory()
    state, results = run(catalog, purchase(), usage(model="MiMo-V2.5-TTS", out=1000), memory=memory)
    assert results[-1].rejection is None and results[-1].facts[0].credits_charged == 0
    assert len(memory.usage_entries("alice", state.packages[0].opened_by)) == 1
    assert memory.fingerprint_of("alice", results[-1].facts[0].cause_event_id)


def test_exhaustion_emitted_exactly_once_and_remaining_never_negative(catalog):
    events = [purchase()] + [usage(at=f"2026-05-02T1{i}:00:00Z", out=4_000_000) for i in range(4)]
    state, results = run(catalog, *events)  # 2.4B each: crosses at the 2nd
    exhausted = [f for r in results for f in r.facts if isinstance(f, QuotaExhausted)]
    assert len(exhausted) == 1 and exhausted[0].cause_event_id == events[2]["event_id"]
    view = account_view(state, utc(2026, 5, 3))
    assert view["status"] == "exhausted" and view["credits_remaining"] == "0"
    assert Decimal(view["credits_used"]) == Decimal(9_600_000_000)  # in-flight usage still recorded


def test_exactly_at_pool_is_exhausted(catalog):
    # 5 x 8.2M cache-miss MiMo-V2.5 tokens x 100 = exactly 4.1B (peak hours)
    events = [usage(at=f"2026-05-02T0{i}:00:00Z", model="MiMo-V2.5", miss=8_200_000) for i in range(5)]
    state, results = run(catalog, purchase(), *events)
    assert not any(isinstance(f, QuotaExhausted) for r in results[:-1] for f in r.facts)
    assert any(isinstance(f, QuotaExhausted) for f in results[-1].facts)
    view = account_view(state, utc(2026, 5, 3))
    assert view["status"] == "exhausted" and view["credits_used"] == str(LITE)
    assert view["credits_remaining"] == "0"


def test_upgrade_restores_exhausted_account(catalog):
    _, results = run(catalog, purchase(), usage(out=10_000_000), upgrade(tier="standard"))
    kinds = [type(f) for f in results[-1].facts]
    assert QuotaRestored in kinds and results[-1].facts[-1].package.tier == "standard"


def test_duplicate_is_noop_and_conflict_is_rejected(catalog):
    memory = InMemoryEventMemory()
    state, _ = run(catalog, purchase(), usage(event_id="same", miss=10), memory=memory)
    again = step(state, ev(usage(event_id="same", miss=10, at="2026-05-02T10:00:00Z")), catalog, memory=memory)
    assert again.duplicate and again.state is state and again.facts == [] and again.rejection is None
    # same id, same content written with another offset: still the same event
    same_instant = usage(event_id="same", miss=10, at="2026-05-02T18:00:00+08:00")
    assert step(state, ev(same_instant), catalog, memory=memory).duplicate
    conflict = step(state, ev(usage(event_id="same", miss=11)), catalog, memory=memory)
    assert conflict.rejection.reason == "duplicate_conflict" and conflict.state is state
    # extra fields are ignored, so they do not make a conflict
    assert step(state, ev(usage(event_id="same", miss=10, trace="x")), catalog, memory=memory).duplicate


def test_retry_after_thousands_of_events_is_still_a_duplicate(catalog):
    # The old dedupe kept 512 ids per account: a retry after 3,000 other events was charged twice.
    memory = InMemoryEventMemory()
    first = usage(event_id="early", miss=10, at="2026-05-01T01:00:00Z")
    later = [usage(at=f"2026-05-0{2 + i // 1000}T00:00:{i % 60:02d}Z", hit=1) for i in range(3000)]
    state, _ = run(catalog, purchase(), first, *later, memory=memory)
    retry = step(state, ev(first), catalog, memory=memory)
    assert retry.duplicate and retry.state is state and retry.facts == []


def test_usage_older_than_lateness_max_is_refused_with_its_own_reason(catalog):
    limits = Limits(lateness_max=timedelta(days=2), dedupe_window=timedelta(days=2))
    state, _ = run(catalog, purchase(), usage(at="2026-05-10T00:00:00Z", miss=1), limits=limits)
    high_water = utc(2026, 5, 10)
    late = step(state, ev(usage(at="2026-05-07T23:59:59Z", miss=1)), catalog, limits, high_water=high_water)
    assert late.rejection.reason == "usage_too_late" and late.state is state
    assert "lateness_max" in late.rejection.detail
    edge = step(state, ev(usage(at="2026-05-08T00:00:00Z", miss=1)), catalog, limits, high_water=high_water)
    assert edge.rejection is None  # exactly lateness_max behind is still accepted


def test_step_never_mutates_its_input(catalog):
    memory = InMemoryEventMemory()
    state, _ = run(catalog, purchase(), usage(miss=10), memory=memory)
    before = state.to_dict()
    step(state, ev(usage(miss=20)), catalog, memory=memory)
    step(state, ev(refresh(at="2026-05-01T12:00:00Z", account="alice")), catalog, memory=memory)
    step(state, ev(upgrade()), catalog, memory=memory)
    assert state.to_dict() == before


def test_beijing_refresh_2026_05_27(catalog):
    # The product document's event: 2026-05-27 00:00 Beijing = 2026-05-26T16:00:00Z.
    state, results = run(catalog, purchase(at="2026-05-10T00:00:00Z"),
                         usage(at="2026-05-26T15:59:59Z", miss=1_000_000),
                         refresh(at="2026-05-27T00:00:00+08:00", account="alice"),
                         usage(at="2026-05-26T16:00:00Z", miss=1))
    package = state.packages[0]
    assert package.valid_until == utc(2026, 6, 10)  # validity unchanged
    assert package.used_micro == Decimal("240") * 10**6  # only the 16:00:00 off-peak usage (300 x 0.8)
    # as of before T the refresh is not in effect yet: everything recorded counts
    assert account_view(state, utc(2026, 5, 26, 15))["credits_used"] == "300000240"
    assert account_view(state, utc(2026, 5, 28))["credits_used"] == "240"


def test_late_refresh_subtracts_earlier_usage(catalog):
    state, _ = run(catalog, purchase(), usage(at="2026-05-05T00:00:00Z", miss=10),
                   usage(at="2026-05-07T00:00:00Z", miss=20),
                   refresh(at="2026-05-06T00:00:00Z", account="alice"))
    assert state.packages[0].used_micro == 6000 * 10**6


def test_refresh_lifts_exhaustion(catalog):
    _, results = run(catalog, purchase(), usage(at="2026-05-05T00:00:00Z", out=10_000_000),
                     refresh(at="2026-05-06T00:00:00Z", account="alice"))
    assert any(isinstance(f, QuotaRestored) for f in results[-1].facts)


def test_late_refresh_splits_exactly_however_many_events_came_before(catalog):
    # No compaction horizon any more: the entries are in the event memory, so a refresh
    # arriving after thousands of events still splits the package exactly.
    memory = InMemoryEventMemory()
    events = [purchase()] + [usage(at=f"2026-05-{2 + i // 500:02d}T00:00:{i % 60:02d}Z", miss=1)
                             for i in range(3000)]
    state, _ = run(catalog, *events, memory=memory)
    late = step(state, ev(refresh(at="2026-05-06T00:00:00Z", account="alice")), catalog, memory=memory)
    assert late.rejection is None
    assert late.state.packages[0].used_micro == 1000 * 300 * 10**6  # days 6 and 7 (500 each)


def test_global_refresh_applies_to_package_opened_later(catalog):
    state, _ = run(catalog, purchase(at="2026-05-20T00:00:00Z"))
    # the package opened after the refresh was known: passes it as global_refreshes
    fresh = step(None, ev(purchase(at="2026-05-20T00:00:00Z", account="bob")), catalog,
                 global_refreshes=[utc(2026, 5, 26, 16)])
    late = step(fresh.state, ev(usage(account="bob", at="2026-05-25T00:00:00Z", miss=10)), catalog)
    assert late.state.packages[0].used_micro == 0  # before the reset: not counted


def test_fact_ids_are_deterministic(catalog):
    state, _ = run(catalog, purchase())
    event = ev(usage(event_id="u-fixed", miss=1))
    first, second = step(state, event, catalog), step(state, event, catalog)
    assert first.facts[0].event_id == second.facts[0].event_id
    assert first.facts[0].event_id.startswith("bc-")


def test_an_upgrade_to_a_shorter_period_that_would_orphan_recorded_usage_is_refused():
    """Annual package with usage in March; a February upgrade to monthly would end before it."""
    from streams.ledger import Fold, load_catalog

    ledger = Fold(load_catalog())
    ledger.feed({"type": "plan.purchased", "event_id": "b", "occurred_at": "2026-01-10T00:00:00Z",
                 "account_id": "a", "tier": "lite", "period": "annual", "currency": "USD", "auto_renew": False})
    ledger.feed({"type": "usage", "event_id": "u", "occurred_at": "2026-03-20T00:00:00Z", "account_id": "a",
                 "model": "mimo-v2.5", "input_cache_hit_tokens": 0, "input_cache_miss_tokens": 10,
                 "output_tokens": 0, "key_id": "k", "cluster": "cn", "protocol": "openai"})
    [result] = ledger.feed({"type": "plan.upgraded", "event_id": "up", "occurred_at": "2026-02-01T00:00:00Z",
                            "account_id": "a", "tier": "pro", "period": "monthly", "currency": "USD"})
    assert result.rejection is not None and result.rejection.reason.value == "upgrade_orphans_usage"
    from datetime import timedelta, datetime, timezone
    view = ledger.result(datetime(2026, 3, 21, tzinfo=timezone.utc))["accounts"]["a"]
    assert view["tier"] == "lite" and view["credits_used"] == "1000"
