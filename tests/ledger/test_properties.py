"""Property tests (hypothesis) of issue 3: arrival order, re-feeding, remaining >= 0, used == sum."""
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import format_instant
from streams.ledger import Fold, account_view, decode_event
from streams.ledger.rating import charge_micro
from tests.ledger.conftest import purchase, refresh, upgrade, usage, utc

START = utc(2026, 5, 1)
MODELS = ["MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Omni", "MiMo-V2-TTS"]
PACKAGE_EVENTS = [
    purchase("alice", "2026-05-01T00:00:00Z", tier="lite", event_id="p-alice"),
    upgrade("alice", "2026-05-15T12:00:00Z", tier="pro", event_id="g-alice"),
    purchase("bob", "2026-05-03T00:00:00Z", tier="standard", event_id="p-bob"),
]


@st.composite
def other_events(draw):
    """Usage (some outside every package, some exhausting) and refreshes, unique ids.

    Spread over 34 days: within lateness_max (35 days), where arrival order must not
    matter (beyond it, late usage is refused by design: `usage_too_late`)."""
    count = draw(st.integers(1, 25))
    events = []
    for n in range(count):
        at = format_instant(START + timedelta(seconds=draw(st.integers(-86400, 33 * 86400))))
        if draw(st.integers(0, 5)) == 0:
            account = draw(st.sampled_from([None, "alice", "bob"]))
            events.append(refresh(at, account, event_id=f"q{n}"))
        else:
            events.append(usage(draw(st.sampled_from(["alice", "bob"])), at,
                                model=draw(st.sampled_from(MODELS)), hit=draw(st.integers(0, 10**6)),
                                miss=draw(st.integers(0, 10**6)),
                                out=draw(st.sampled_from([0, 7, 10**6, 10**7])), event_id=f"u{n}"))
    return events


def fold(events):
    ledger = Fold(ledger_catalog())
    for data in PACKAGE_EVENTS + events:
        ledger.feed(data)
    return ledger


_CATALOG = []


def ledger_catalog():
    if not _CATALOG:
        from streams.ledger import load_catalog
        _CATALOG.append(load_catalog())
    return _CATALOG[0]


def balances(ledger):
    return {account: [(p.valid_from, p.valid_until, p.used_micro, p.last_reset) for p in state.packages]
            for account, state in ledger.accounts.items() if state is not None}


@settings(max_examples=120, deadline=None)
@given(other_events(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_balances(events, random):
    shuffled = list(events)
    random.shuffle(shuffled)
    first, second = fold(events), fold(shuffled)
    assert balances(first) == balances(second)
    assert sorted(r.event_id for r in first.rejected) == sorted(r.event_id for r in second.rejected)
    for as_of in (utc(2026, 5, 10), utc(2026, 5, 20), utc(2026, 6, 1)):
        assert first.result(as_of)["accounts"] == second.result(as_of)["accounts"]


@settings(max_examples=60, deadline=None)
@given(other_events(), st.data())
def test_refeeding_any_event_is_a_noop(events, data):
    ledger = fold(events)
    before = {a: s.to_dict() for a, s in ledger.accounts.items() if s is not None}
    rejected = len(ledger.rejected)
    again = data.draw(st.sampled_from(PACKAGE_EVENTS + events))
    ledger.feed(again)
    after = {a: s.to_dict() for a, s in ledger.accounts.items() if s is not None}
    for account in before:  # same balances; only a re-fed *rejected* event is rejected again
        assert after[account]["packages"] == before[account]["packages"]
    was_rejected = any(r.event_id == again["event_id"] for r in ledger.rejected[:rejected])
    assert len(ledger.rejected) == rejected + (1 if was_rejected else 0)


@settings(max_examples=120, deadline=None)
@given(other_events())
def test_remaining_never_negative_and_used_is_sum_of_accepted_charges(events):
    ledger = fold(events)
    rejected = {r.event_id for r in ledger.rejected}
    catalog = ledger_catalog()
    for account, state in ledger.accounts.items():
        for package in state.packages:
            resets = [decode_event(d).occurred_at for d in events if d["type"] == "quota.refreshed"
                      and d.get("account_id") in (None, account) and d["event_id"] not in rejected]
            reset = max([t for t in resets if package.contains(t)] + [package.valid_from])
            assert package.last_reset == reset
            expected = 0
            for data in events:
                if data["type"] != "usage" or data["account_id"] != account or data["event_id"] in rejected:
                    continue
                event = decode_event(data)
                if package.contains(event.occurred_at) and event.occurred_at >= reset:
                    expected += charge_micro(catalog.version_at(event.occurred_at), event.model,
                                             event.input_cache_hit_tokens, event.input_cache_miss_tokens,
                                             event.output_tokens, event.occurred_at)
            assert package.used_micro == expected
            assert package.remaining_micro >= 0
        for day in range(0, 45, 3):
            view = account_view(state, START + timedelta(days=day))
            if view["credits_remaining"] is not None:
                assert not view["credits_remaining"].startswith("-")
