"""The worker's serialization shortcuts give exactly the bytes of the plain (model / dict) code.

* `StepResult.fact_payloads()` == `(fact.type, fact.model_dump_json().encode())` of `facts`;
* `AccountState.to_json()` == `orjson.dumps(state.to_dict())`, also across branched
  versions (the caches are shared between versions of one state);
* `view_key(state, t)` == the (status, allowed, tier, valid_from) of `account_view`.
"""
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import format_instant
from streams.ledger import AccountState, Ledger, Limits, account_view, allowed, step, view_key
from streams.ledger.dedupe import AppliedIds
from streams.ledger.json_cache import JsonArray, instant_text
from tests.ledger.conftest import ev, purchase, refresh, renew, upgrade, usage, utc

START = utc(2026, 5, 1)
#: Small limits, so that compaction, dedupe eviction and pruning happen often.
SMALL = Limits(usage_entries_max=4, applied_ids_max=3, packages_max=2, refreshes_max=3)
MODELS = ["MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Omni"]
#: Ids with characters JSON must escape (quotes, backslashes, control characters) and non-ASCII.
_ID_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\/\x00\x01\x08\t\n\x0c\r\x1f\x7f\u2028é\U0001f600')),
                   min_size=0, max_size=6)


def _at(seconds: int) -> str:
    return format_instant(START + timedelta(seconds=seconds))


@st.composite
def logs(draw):
    """Plan, usage and refresh events over two accounts with awkward ids, each id unique."""
    accounts = [draw(_ID_TEXT.map(lambda text: "a" + text)), draw(_ID_TEXT.map(lambda text: "b" + text))]
    events = []
    for n in range(draw(st.integers(1, 30))):
        account = draw(st.sampled_from(accounts))
        at = _at(draw(st.integers(-86400, 70 * 86400)))
        event_id = f"{n}{draw(_ID_TEXT)}"
        kind = draw(st.integers(0, 11))
        if kind == 0:
            events.append(purchase(account, at, tier=draw(st.sampled_from(["lite", "standard", "pro", "max"])),
                                   period=draw(st.sampled_from(["monthly", "annual"])),
                                   currency=draw(st.sampled_from(["USD", "CNY"])),
                                   auto_renew=draw(st.booleans()), event_id=event_id))
        elif kind == 1:
            events.append(upgrade(account, at, tier=draw(st.sampled_from(["standard", "pro", "max"])),
                                  period=draw(st.sampled_from(["monthly", "annual"])), event_id=event_id))
        elif kind == 2:
            events.append(renew(account, at, event_id=event_id))
        elif kind == 3:
            events.append(refresh(at, draw(st.sampled_from([None, account])), event_id=event_id))
        else:
            events.append(usage(account, at, model=draw(st.sampled_from(MODELS)),
                                hit=draw(st.integers(0, 10**6)), miss=draw(st.integers(0, 10**6)),
                                out=draw(st.sampled_from([0, 7, 10**6, 10**7])), event_id=event_id))
        if draw(st.integers(0, 9)) == 0:
            events.append(events[draw(st.integers(0, len(events) - 1))])  # a redelivery
    return events


def _plain_payloads(result):
    return [(fact.type, fact.model_dump_json().encode("utf-8")) for fact in result.facts]


def _check_state(state: AccountState) -> None:
    assert state.to_json() == orjson.dumps(state.to_dict())
    assert state.to_json() == orjson.dumps(state.to_dict())  # again, from the caches
    for day in (-1, 0, 5, 20, 31, 40, 70, 400):
        as_of = START + timedelta(days=day, hours=3)
        view = account_view(state, as_of)
        assert view_key(state, as_of) == (view["status"], allowed(view), view["tier"], view["valid_from"])


@settings(max_examples=150, deadline=None)
@given(logs(), st.sampled_from([SMALL, Limits()]))
def test_fact_payloads_and_state_json_match_the_plain_serialization(catalog, events, limits):
    ledger = Ledger(catalog, limits)
    older: list[AccountState] = []
    for data in [purchase(ev_account, "2026-05-01T00:00:00Z", event_id=f"p{ev_account}")
                 for ev_account in sorted({e["account_id"] for e in events if e.get("account_id")})] + events:
        results = ledger.feed(orjson.dumps(data))
        for result in [] if not isinstance(results, list) else results:
            fast = result.fact_payloads()
            assert fast == _plain_payloads(result)
        for state in ledger.accounts.values():
            if state is not None:
                _check_state(state)
                older.append(state)
    # Branches: an older version stepped again shares caches with the newer versions.
    for n, state in enumerate(older[::3]):
        branch = step(state, ev(usage(state.account_id, _at(3600 + n), miss=10 + n, event_id=f"branch{n}")),
                      catalog, limits)
        assert branch.fact_payloads() == _plain_payloads(branch)
        _check_state(branch.state)
        _check_state(state)
    for state in older:
        _check_state(state)


def test_fact_payloads_of_priced_and_exhausting_facts(catalog):
    events = [purchase("a", "2026-05-01T00:00:00Z", auto_renew=True), usage("a", miss=10**7),
              usage("a", at="2026-05-02T11:00:00Z", miss=10**7), upgrade("a", "2026-05-03T00:00:00Z", tier="max"),
              refresh("2026-05-04T00:00:00Z", "a"), renew("a", "2026-05-31T00:00:00Z")]
    state, kinds = None, []
    for data in events:
        result = step(state, ev(data), catalog)
        assert result.fact_payloads() == _plain_payloads(result)
        kinds += [fact_type for fact_type, _ in result.fact_payloads()]
        state = result.state
        _check_state(state)
    assert {"balance.changed", "quota.exhausted", "quota.restored"} <= set(kinds)
    assert step(state, ev(events[1]), catalog).fact_payloads() == []  # a duplicate: no fact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 40)), max_size=60))
def test_json_array_is_orjson_of_the_slice(operations):
    items, cache, copies = [], JsonArray(), []
    for kind, a, b in operations:
        if kind == 0:
            items.append((f"id\"{len(items)}", "\\" * (a % 3)))
        elif kind == 1:
            start, stop = sorted((min(a, len(items)), min(b, len(items))))
            assert cache.array(items, start, stop) == orjson.dumps(items[start:stop])
        elif kind == 2:
            start, stop = sorted((min(a, len(items)), min(b, len(items))))
            copies.append((items[start:stop], cache.sliced(start, stop)))
        else:
            for part, copy in copies:
                assert copy.array(part, 0, len(part)) == orjson.dumps(part)


def test_applied_ids_json_follows_versions_and_eviction():
    ids = AppliedIds(3)
    versions = []
    for n in range(12):
        ids = ids.add(f"e{n}\n", f"f{n}")
        versions.append(ids)
        assert ids.json_pairs() == orjson.dumps(ids.pairs())
    branched = versions[4].add("x", "y")  # appended to an older version: a window copy
    assert branched.json_pairs() == orjson.dumps(branched.pairs())
    re_added = versions[-1].add("e1\n", "f1")  # an evicted id added again
    assert re_added.json_pairs() == orjson.dumps(re_added.pairs())
    for version in versions:
        assert version.json_pairs() == orjson.dumps(version.pairs())


def test_instant_text_is_format_instant():
    from datetime import timezone
    east = timezone(timedelta(hours=8))
    for instant in (START, START.astimezone(east), START + timedelta(microseconds=5), utc(1, 1, 2)):
        assert instant_text(instant) == format_instant(instant)
