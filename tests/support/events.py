"""Builders of contract events for the integration tests."""
from __future__ import annotations

import itertools
from datetime import datetime

from tests.support.kafka_io import instant

_ids = itertools.count()


def purchase(account_id: str, at: datetime, tier: str = "lite", period: str = "monthly", event_id: str | None = None) -> dict:
    return {"type": "plan.purchased", "event_id": event_id or f"buy-{account_id}-{next(_ids)}", "occurred_at": instant(at),
            "account_id": account_id, "tier": tier, "period": period, "currency": "USD", "auto_renew": False}


def upgrade(account_id: str, at: datetime, tier: str, period: str = "monthly") -> dict:
    return {"type": "plan.upgraded", "event_id": f"up-{account_id}-{next(_ids)}", "occurred_at": instant(at),
            "account_id": account_id, "tier": tier, "period": period, "currency": "USD"}


def usage(account_id: str, at: datetime, model: str = "mimo-v2.5", hit: int = 0, miss: int = 0, output: int = 0,
          event_id: str | None = None) -> dict:
    return {"type": "usage", "event_id": event_id or f"use-{account_id}-{next(_ids)}", "occurred_at": instant(at),
            "account_id": account_id, "model": model, "input_cache_hit_tokens": hit, "input_cache_miss_tokens": miss,
            "output_tokens": output, "key_id": f"key-{account_id}", "cluster": "sgp", "protocol": "anthropic"}


def refresh(at: datetime, account_id: str | None = None) -> dict:
    event = {"type": "quota.refreshed", "event_id": f"refresh-{next(_ids)}", "occurred_at": instant(at)}
    if account_id is not None:
        event["account_id"] = account_id
    return event
