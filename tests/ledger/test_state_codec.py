"""AccountState.to_dict/from_dict: plain JSON, round trip behaves identically (snapshots are caches)."""
import json

import orjson
import pytest

from streams.ledger import AccountState, Limits, step
from streams.ledger.memory import InMemoryEventMemory
from tests.ledger.conftest import ev, purchase, refresh, run, upgrade, usage


def test_round_trip_is_plain_json_and_equivalent(catalog):
    limits = Limits()
    memory = InMemoryEventMemory()
    events = [purchase(), *[usage(at=f"2026-05-0{d}T16:30:00Z", model="MiMo-V2.5", hit=1) for d in range(2, 9)],
              refresh(at="2026-05-08T00:00:00Z", account="alice"), upgrade(at="2026-05-09T00:00:00Z")]
    state, _ = run(catalog, *events, limits=limits, memory=memory)
    data = state.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["packages"][0]["s"][0][1] == "9.6"  # six off-peak hits of 1.6 before the refresh
    restored = AccountState.from_dict(data, limits)
    assert restored.to_dict() == data
    nxt = ev(usage(at="2026-05-09T01:00:00Z", miss=3))
    assert step(restored, nxt, catalog, limits, memory=memory).state.to_dict() == \
        step(state, nxt, catalog, limits, memory=memory).state.to_dict()
    assert step(restored, ev(events[3]), catalog, limits, memory=memory).duplicate


def test_state_is_small_whatever_the_history(catalog):
    events = [purchase()] + [usage(at=f"2026-05-{2 + i // 200:02d}T00:00:{i % 60:02d}Z", hit=1) for i in range(2000)]
    state, _ = run(catalog, *events)
    assert len(orjson.dumps(state.to_dict())) < 400


def test_malformed_state_raises_value_error(catalog):
    state, _ = run(catalog, purchase(), usage(miss=1))
    data = state.to_dict()
    data["packages"][0]["s"] = [["2026-05-01T00:00:00Z", 300]]
    with pytest.raises(ValueError):
        AccountState.from_dict(data)
    with pytest.raises(ValueError):
        AccountState.from_dict({"format": 1})
