"""Per-call costs of the core: `python -m bench.core [--repeat 20000]`.

Measures, in microseconds per call:
* decode: `decode_event` of a typical usage line (bytes);
* step: `step` of a decoded usage event on a busy account;
* to_dict+dumps / loads+from_dict: the account record's round trip (the small hot
  state: balances and package headers; ids and usage entries live beside it), for an
  account after `BUSY_EVENTS` usage events.
Not a test: the figures go in the README.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson

from streams.ledger import AccountState, DEFAULT_LIMITS, Rejection, decode_event, load_catalog, step

START = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _stamp(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def usage_line(n: int, account: str = "acct-1") -> bytes:
    instant = START + timedelta(seconds=60 + n * 7, microseconds=n % 1000)
    return orjson.dumps({
        "type": "usage", "event_id": f"u-{n}", "occurred_at": _stamp(instant),
        "account_id": account, "model": ("MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Omni")[n % 3],
        "input_cache_hit_tokens": 1000 + n % 50_000, "input_cache_miss_tokens": 10 + n % 5000,
        "output_tokens": 7 + n % 2000, "key_id": f"key-{n % 9}", "cluster": "cn",
        "protocol": "openai", "client": "opencode/1.0"})


#: Usage events applied to the busy account before measuring.
BUSY_EVENTS = 1000


def busy_account(catalog, limits=DEFAULT_LIMITS) -> tuple[AccountState, int]:
    """An account after BUSY_EVENTS usage events; returns (state, next n)."""
    purchase = decode_event(orjson.dumps({
        "type": "plan.purchased", "event_id": "buy", "occurred_at": _stamp(START),
        "account_id": "acct-1", "tier": "max", "period": "annual", "currency": "USD",
        "auto_renew": True}))
    state = step(None, purchase, catalog, limits).state
    for n in range(BUSY_EVENTS):
        state = step(state, decode_event(usage_line(n)), catalog, limits).state
    return state, BUSY_EVENTS


def _per_call_us(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, time.perf_counter() - began)
    return best / repeat * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20_000)
    args = parser.parse_args(argv)
    catalog = load_catalog()
    state, n = busy_account(catalog)
    lines = [usage_line(n + i) for i in range(args.repeat)]
    events = [decode_event(line) for line in lines]
    assert not any(isinstance(e, Rejection) for e in events)

    it = iter(range(10**12))
    decode_us = _per_call_us(lambda: decode_event(lines[next(it) % len(lines)]), args.repeat)
    held = [state, 0]

    def fold_one() -> None:  # a fold, as the replay does (a fresh event each call)
        events_at = held[1]
        held[0] = step(held[0], events[events_at % len(events)], catalog).state
        held[1] = events_at + 1

    events = [decode_event(usage_line(n + args.repeat + i)) for i in range(3 * args.repeat)]
    step_us = _per_call_us(fold_one, args.repeat)
    small = max(args.repeat // 50, 50)
    dump_us = _per_call_us(lambda: orjson.dumps(state.to_dict()), small)
    raw = orjson.dumps(state.to_dict())
    load_us = _per_call_us(lambda: AccountState.from_dict(orjson.loads(raw)), small)
    print(f"decode {decode_us:.2f} us/event, step {step_us:.2f} us/event")
    print(f"account record after {BUSY_EVENTS} usage events ({len(raw):,} bytes): "
          f"to_dict+dumps {dump_us:.1f} us, loads+from_dict {load_us:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
