"""The benchmark and fault-test workload: purchases, then usage with gateway retries.

One generator, so the per-event benchmark, the pipeline benchmark and the fault tests
measure and prove the same traffic.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MODELS = ("mimo-v2.5", "mimo-v2-omni", "mimo-v2.5-tts")
#: Share of usage events a gateway sends twice (a retry), sometimes much later.
RETRY_SHARE = 0.05


def stamp(instant: datetime) -> str:
    """RFC 3339 'Z' text of an instant."""
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Workload:
    plans: list[dict]
    usage: list[dict]
    #: `usage` as a gateway sends it: retries inserted at random later positions.
    wire: list[dict]


def generate(events: int, accounts: list[str], day: datetime, seed: int = 1, tier: str = "max",
             id_prefix: str = "load") -> Workload:
    """A max (by default) monthly purchase per account at `day`, then `events` usage events from day + 1h."""
    rng = random.Random(seed)
    plans = [{"type": "plan.purchased", "event_id": f"buy-{account_id}", "occurred_at": stamp(day),
              "account_id": account_id, "tier": tier, "period": "monthly", "currency": "USD",
              "auto_renew": False} for account_id in accounts]
    usage = []
    for index in range(events):
        account_id = rng.choice(accounts)
        usage.append({"type": "usage", "event_id": f"{id_prefix}-{seed}-{index}",
                      "occurred_at": stamp(day + timedelta(hours=1, seconds=index)),
                      "account_id": account_id, "model": rng.choice(MODELS),
                      "input_cache_hit_tokens": rng.randint(0, 5000),
                      "input_cache_miss_tokens": rng.randint(0, 2000),
                      "output_tokens": rng.randint(0, 800), "key_id": f"key-{account_id}",
                      "cluster": "sgp", "protocol": "anthropic"})
    wire = list(usage)
    for event in usage:
        if rng.random() < RETRY_SHARE:
            wire.insert(rng.randint(0, len(wire)), event)
    return Workload(plans, usage, wire)
