"""A key's history for `tokenplan keys show`: issued, violations, warnings, suspensions, reinstatements.

Read from the topics that hold them (`keys`, `policy`, `policy-facts`, `key-status`), so
it is what the system decided, not a copy kept aside.
"""
from __future__ import annotations

from collections import Counter

import orjson

from gateway.config import GatewaySettings
from gateway.kafka import read_whole
from gateway.keys.records import public_view
from gateway.keys.registry import load_keys
from schemas.topics import KEY_STATUS, POLICY, POLICY_FACTS

__all__ = ["key_history"]

#: Request event ids listed per suspension or warning in the summary (the fact has them all).
SHOWN_REQUESTS = 5


async def _values(settings: GatewaySettings, short_name: str, key_id: str) -> list[dict]:
    out = []
    async for _key, value in read_whole(settings, short_name):
        if value is None:
            continue
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(body, dict) and body.get("key_id") == key_id:
            out.append(body)
    return out


async def key_history(settings: GatewaySettings, key_id: str) -> dict | None:
    """The key's record and its policy history; None when no key has that id."""
    record = (await load_keys(settings)).get(key_id)
    if record is None:
        return None
    violations = [v for v in await _values(settings, POLICY, key_id) if v.get("type") == "policy.violation"]
    facts = await _values(settings, POLICY_FACTS, key_id)
    statuses = await _values(settings, KEY_STATUS, key_id)
    rules = Counter(v["classification"]["rule"] for v in violations)
    return {
        "key": public_view(record),
        "policy_status": statuses[-1]["status"] if statuses else "active",
        "violations": {"count": len(violations), "by_rule": dict(rules.most_common()),
                       "first": violations[0]["occurred_at"] if violations else None,
                       "last": violations[-1]["occurred_at"] if violations else None},
        "events": [{"type": f["type"], "at": f["occurred_at"], "message": f["message"],
                    "violations": f["violations"], "requests": f["request_event_ids"][-SHOWN_REQUESTS:]}
                   for f in facts],
    }
