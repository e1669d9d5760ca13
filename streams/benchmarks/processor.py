"""Streaming ledger per-event cost: `python -m streams.benchmarks.processor [--events 20000]`.

What the worker does per ledger-log record, without Kafka: `Processor.process`
over a `DictStore`, then `AccountRecord.to_bytes` of the account written (the
worker writes the record to its table on every event). The load: one purchase
(max, monthly) for each of `--accounts` accounts, then `--events` usage events
over them, with 5% gateway retries (the same event again, sometimes much
later). Prints events/s and microseconds per event; `--digest` also prints a
hash of every byte published and stored (to check an optimization changes no
output), `--profile` the top of a cProfile run. Not a test.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import time
from datetime import datetime, timezone

import orjson

from streams.agents.processor import DictStore, Processor
from streams.agents.records import LogPosition, Source
from streams.benchmarks.workload import generate as workload_generate
from streams.ledger import Limits, load_catalog

#: Fixed instants, so that `--digest` is reproducible: the purchases are two days
#: before `NOW` (valid now, as a live worker would see them).
NOW = datetime(2026, 6, 3, 12, 0, tzinfo=timezone.utc)
DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)


def generate(events: int, accounts: int, seed: int = 1, day: datetime = DAY) -> list[dict]:
    """Purchases for every account, then `events` usage events with retries, reproducibly."""
    workload = workload_generate(events, [f"acc{i}" for i in range(accounts)], day, seed)
    return workload.plans + workload.wire


def run(raws: list[tuple[bytes, bytes]], now: datetime, digest=None) -> float:
    """Process every record as the worker does; returns the seconds taken."""
    processor = Processor(load_catalog(), Limits())
    store = DictStore()
    began = time.perf_counter()
    for offset, (raw, key) in enumerate(raws):
        emitted = processor.process(raw, key, LogPosition(0, offset), Source("u", 0, offset), store, now)
        value = store.get(key.decode()).to_bytes()  # the worker writes the record per event
        if digest is not None:
            for emit in emitted:
                digest.update(b"%s\x00%s\x00%s\x00" % (emit.topic.encode(), emit.key or b"-", emit.value))
            digest.update(value)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.benchmarks.processor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is printed")
    parser.add_argument("--digest", action="store_true", help="also hash every output byte")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    args = parser.parse_args(argv)
    raws = [(orjson.dumps(event), event["account_id"].encode())
            for event in generate(args.events, args.accounts, args.seed)]
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, raws, NOW)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return 0
    best = min(run(raws, NOW) for _ in range(max(args.repeat, 1)))
    print(f"{len(raws)} records: {len(raws) / best:.0f} ev/s, {best / len(raws) * 1e6:.1f} us/event")
    if args.digest:
        digest = hashlib.sha256()
        run(raws, NOW, digest)
        print(f"output digest {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
