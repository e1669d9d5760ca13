"""Fixtures and event builders for the pure core tests (no Kafka, no clock)."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from streams.ledger import Fold, Rejection, decode_event, load_catalog, step
from streams.ledger.limits import DEFAULT_LIMITS
from streams.ledger.memory import InMemoryEventMemory, record_applied

_ids = itertools.count()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def usage(account: str = "alice", at: str = "2026-05-02T10:00:00Z", *, model: str = "MiMo-V2.5-Pro",
          hit: int = 0, miss: int = 0, out: int = 0, event_id: str | None = None, **extra) -> dict:
    return {"type": "usage", "event_id": event_id or f"u-{next(_ids)}", "occurred_at": at,
            "account_id": account, "model": model, "input_cache_hit_tokens": hit,
            "input_cache_miss_tokens": miss, "output_tokens": out, "key_id": "key-1",
            "cluster": "cn", "protocol": "openai", **extra}


def purchase(account: str = "alice", at: str = "2026-05-01T00:00:00Z", *, tier: str = "lite",
             period: str = "monthly", currency: str = "USD", auto_renew: bool = False,
             event_id: str | None = None) -> dict:
    return {"type": "plan.purchased", "event_id": event_id or f"p-{next(_ids)}", "occurred_at": at,
            "account_id": account, "tier": tier, "period": period, "currency": currency,
            "auto_renew": auto_renew}


def upgrade(account: str = "alice", at: str = "2026-05-10T00:00:00Z", *, tier: str = "pro",
            period: str = "monthly", currency: str = "USD", event_id: str | None = None) -> dict:
    return {"type": "plan.upgraded", "event_id": event_id or f"g-{next(_ids)}", "occurred_at": at,
            "account_id": account, "tier": tier, "period": period, "currency": currency}


def renew(account: str = "alice", at: str = "2026-05-31T23:00:00Z", *,
          event_id: str | None = None) -> dict:
    return {"type": "plan.renewed", "event_id": event_id or f"r-{next(_ids)}", "occurred_at": at,
            "account_id": account}


def refresh(at: str = "2026-05-26T16:00:00Z", account: str | None = None, *,
            event_id: str | None = None) -> dict:
    event = {"type": "quota.refreshed", "event_id": event_id or f"q-{next(_ids)}", "occurred_at": at}
    if account is not None:
        event["account_id"] = account
    return event


def ev(data: dict):
    """Decode a dict that must be valid."""
    event = decode_event(data)
    assert not isinstance(event, Rejection), event
    return event


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture
def ledger(catalog):
    return Fold(catalog)


def run(catalog, *events: dict, limits=DEFAULT_LIMITS, memory: InMemoryEventMemory | None = None):
    """Fold events for one account through `step` with an event memory (a fresh one
    unless given: pass your own to step on after the fold); returns (state, results)."""
    memory = InMemoryEventMemory() if memory is None else memory
    state, results = None, []
    for data in events:
        event = ev(data)
        result = step(state, event, catalog, limits, memory=memory)
        if result.state is not None:
            record_applied(memory, result.state.account_id, event, result)
        state = result.state
        results.append(result)
    return state, results
