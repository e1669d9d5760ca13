"""The benchmark and fault-test workload: purchases, then usage with gateway retries.

One generator, so the per-event benchmark, the pipeline benchmark and the fault tests
measure and prove the same traffic.

What `generate` sends (`Workload.wire`), all decided by the seed:

* **usage** over every account, with a few **busy accounts** (`BUSY_ACCOUNTS`) taking
  `BUSY_SHARE` of all events: real gateways have heavy customers, and only an account
  with many events can be retried from far back (below). With the fault tests' default
  load (200 accounts, 20,000 events: ~70 events per ordinary account) each busy account
  has about 2,000 events.
* **random retries**: `RETRY_SHARE` of the usage events is sent a second time at a
  random position of the wire (sometimes before the original: the first one to arrive
  is the one charged).
* **retries from far back**: in every account with more than `FAR_RETRY_GAP` events
  (the busy ones), `FAR_RETRY_SHARE` of its events is sent again, identical (same
  event_id, same content), after at least `FAR_RETRY_GAP` *other* events of the same
  account that were first sent after it. That is more than a dedupe memory of the last
  512 ids per account holds: the retry proves that an event is charged once however
  many events of its account came in between.

`usage` holds each distinct event once: what the balances must show (each charged
once, none lost), whatever the retries.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MODELS = ("mimo-v2.5", "mimo-v2-omni", "mimo-v2.5-tts")
#: Share of usage events a gateway sends twice (a retry), sometimes much later.
RETRY_SHARE = 0.05
#: How many accounts are busy (the first ones of a seeded shuffle of `accounts`).
BUSY_ACCOUNTS = 3
#: Share of all usage events that goes to the busy accounts (the rest: uniform over all
#: accounts). 3 accounts x 30% of 20,000 events: ~2,000 events each in the fault tests.
BUSY_SHARE = 0.30
#: A retry from far back comes after at least this many other events of its own account
#: (first sent after the original): more than the 512 ids a per-account dedupe memory
#: of the last 512 ids would still hold.
FAR_RETRY_GAP = 600
#: Share of an account's events re-sent from far back, in every account that has more
#: than `FAR_RETRY_GAP` events (the busy accounts): ~40 per busy account in the fault tests.
FAR_RETRY_SHARE = 0.03


def stamp(instant: datetime) -> str:
    """RFC 3339 'Z' text of an instant."""
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Workload:
    plans: list[dict]
    #: Each distinct usage event once: what must be charged.
    usage: list[dict]
    #: `usage` as a gateway sends it: random retries inserted at random positions, and
    #: retries from far back of the busy accounts' events (see the module docstring).
    wire: list[dict]
    #: The accounts that take `BUSY_SHARE` of the events.
    busy: list[str]


def generate(events: int, accounts: list[str], day: datetime, seed: int = 1, tier: str = "max",
             id_prefix: str = "load", busy_accounts: int = BUSY_ACCOUNTS,
             busy_share: float = BUSY_SHARE) -> Workload:
    """A max (by default) monthly purchase per account at `day`, then `events` usage events from day + 1h.

    The usage, its random retries and its retries from far back are described in the
    module docstring; `busy_accounts=0` spreads the events uniformly over `accounts`.
    """
    rng = random.Random(seed)
    plans = [{"type": "plan.purchased", "event_id": f"buy-{account_id}", "occurred_at": stamp(day),
              "account_id": account_id, "tier": tier, "period": "monthly", "currency": "USD",
              "auto_renew": False} for account_id in accounts]
    busy = rng.sample(accounts, min(busy_accounts, len(accounts)))
    usage = []
    for index in range(events):
        account_id = rng.choice(busy if busy and rng.random() < busy_share else accounts)
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
    return Workload(plans, usage, with_far_retries(wire, accounts, rng), busy)


def with_far_retries(wire: list[dict], accounts: list[str], rng: random.Random) -> list[dict]:
    """`wire` with retries from far back: in each account with more than FAR_RETRY_GAP
    events, FAR_RETRY_SHARE of them sent again after at least FAR_RETRY_GAP other events of
    the account first sent after the original's first sending."""
    firsts: dict[str, list[int]] = defaultdict(list)  # account -> wire positions of its first sendings
    sent: set[str] = set()
    for position, event in enumerate(wire):
        if event["event_id"] not in sent:
            sent.add(event["event_id"])
            firsts[event["account_id"]].append(position)
    after: dict[int, list[dict]] = defaultdict(list)  # wire position -> retries sent right after it
    for account_id in accounts:
        positions = firsts.get(account_id, [])
        for ordinal in range(len(positions) - FAR_RETRY_GAP):
            if rng.random() < FAR_RETRY_SHARE:
                later = rng.randrange(ordinal + FAR_RETRY_GAP, len(positions))
                after[positions[later]].append(wire[positions[ordinal]])
    if not after:
        return wire
    result: list[dict] = []
    for position, event in enumerate(wire):
        result.append(event)
        retries = after.get(position)
        if retries:
            rng.shuffle(retries)
            result.extend(retries)
    return result
