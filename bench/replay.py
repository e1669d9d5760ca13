"""Replay throughput: `python -m bench.replay [--events 1000000] [--accounts 2000]`.

Generates N usage events (plus one purchase per account) deterministically
into a temporary JSONL file, then times the replay fold (decode + step, the
same code `tokenplan replay` runs) and prints events/s. Not a test: the
figure goes in the README. `--profile` prints the top of a cProfile run.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import orjson

from streams.ledger.catalog import load_catalog
from streams.cli.replay import replay_into
from streams.ledger.fold import Fold

MODELS = ("MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Pro", "MiMo-V2-Omni", "MiMo-V2.5-TTS")
CLUSTERS = ("cn", "sgp", "ams")
PROTOCOLS = ("openai", "anthropic")
START = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _stamp(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate(path: str, events: int, accounts: int, seed: int = 7) -> None:
    """Write purchases then `events` usage lines, in time order, reproducibly."""
    rng = random.Random(seed)
    tiers = ("lite", "standard", "pro", "max")
    with open(path, "wb") as handle:
        for a in range(accounts):
            handle.write(orjson.dumps({
                "type": "plan.purchased", "event_id": f"buy-{a}", "occurred_at": _stamp(START),
                "account_id": f"acct-{a}", "tier": tiers[a % 4], "period": "annual",
                "currency": "USD", "auto_renew": a % 3 == 0}) + b"\n")
        step_us = 20 * 24 * 3600 * 1_000_000 // max(events, 1)
        for n in range(events):
            instant = START + timedelta(microseconds=1 + n * step_us)
            handle.write(orjson.dumps({
                "type": "usage", "event_id": f"u-{n}", "occurred_at": _stamp(instant),
                "account_id": f"acct-{rng.randrange(accounts)}", "model": rng.choice(MODELS),
                "input_cache_hit_tokens": rng.randrange(50_000),
                "input_cache_miss_tokens": rng.randrange(5_000),
                "output_tokens": rng.randrange(2_000), "key_id": f"key-{rng.randrange(9)}",
                "cluster": rng.choice(CLUSTERS), "protocol": rng.choice(PROTOCOLS),
                "client": "opencode/1.0"}) + b"\n")


def replay(path: str) -> tuple[Fold, int, float]:
    """Decode + step every line, exactly as `tokenplan replay` does; returns (ledger, lines, seconds)."""
    ledger = Fold(load_catalog())
    with open(path, "rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    started, cpu_started = time.perf_counter(), time.process_time()
    replay_into(ledger, path, progress=False)
    replay.cpu_seconds = time.process_time() - cpu_started  # type: ignore[attr-defined]
    return ledger, lines, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "events.jsonl")
        began = time.perf_counter()
        generate(path, args.events, args.accounts)
        print(f"generated {args.events:,} usage events + {args.accounts:,} purchases "
              f"in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        ledger, lines, seconds = replay(path)
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    rate = lines / seconds
    cpu = replay.cpu_seconds  # type: ignore[attr-defined]
    print(f"replayed {lines:,} events in {seconds:.2f}s: {rate:,.0f} events/s "
          f"({lines / cpu:,.0f} events per CPU second; "
          f"{len(ledger.rejected)} rejected, {ledger.facts_count:,} facts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
