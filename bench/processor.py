"""Streaming ledger per-event cost: `python -m bench.processor [--events 20000]`.

What the worker does per ledger-log record, without Kafka: the sequencer's v2
batches (`--batch` events of one partition per record), `Processor.process_record`
over a `PartitionState` on a `DictBackend`, and the record's writes (`finish`,
then committed). The load: one purchase (max, monthly) for each of `--accounts`
accounts, then `--events` usage events over them, with gateway retries (some
from far back). Prints events/s, microseconds per event and the state bytes
written per event (keys + values: what goes to the changelog); `--digest` also
prints a hash of every byte published and stored (to check an optimization
changes no output), `--profile` the top of a cProfile run. Not a test.
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

from streams.processing.batch_record import FORMAT_HEADER, InputEvent, encode_batch
from streams.processing.processor import Processor
from streams.processing.state_store import DictBackend, PartitionState, RecordCache
from bench.workload import generate as workload_generate
from streams.ledger import Limits, load_catalog
from streams.ledger.partitioning import account_partition

PARTITIONS = 8

#: Fixed instants, so that `--digest` is reproducible: the purchases are two days
#: before `NOW` (valid now, as a live worker would see them).
NOW = datetime(2026, 6, 3, 12, 0, tzinfo=timezone.utc)
DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)


def generate(events: int, accounts: int, seed: int = 1, day: datetime = DAY) -> list[dict]:
    """Purchases for every account, then `events` usage events with retries, reproducibly."""
    workload = workload_generate(events, [f"acc{i}" for i in range(accounts)], day, seed)
    return workload.plans + workload.wire


def batches(raws: list[tuple[bytes, bytes]], size: int) -> list[tuple[int, bytes]]:
    """(partition, v2 value) records as the sequencer packs them: `size` events per fetch."""
    records = []
    for start in range(0, len(raws), size):
        groups: dict[int, list[InputEvent]] = {}
        for offset, (raw, key) in enumerate(raws[start:start + size], start):
            partition = account_partition(key.decode(), PARTITIONS)
            groups.setdefault(partition, []).append(InputEvent("usage", 0, offset, key, raw))
        records += [(partition, encode_batch(events)) for partition, events in groups.items()]
    return records


def units(records: list[tuple[int, bytes]], unit_records: int) -> list[tuple[int, list[bytes]]]:
    """Records grouped as the applier takes them: up to `unit_records` consecutive records of
    one partition per unit of work (1: no backlog; TOKENPLAN_UNIT_RECORDS_MAX under a backlog)."""
    by_partition: dict[int, list[bytes]] = {}
    for partition, value in records:
        by_partition.setdefault(partition, []).append(value)
    return [(partition, values[start:start + unit_records]) for partition, values in by_partition.items()
            for start in range(0, len(values), unit_records)]


def run(records: list[tuple[int, bytes]], now: datetime, digest=None, unit_records: int = 1) -> tuple[float, int]:
    """Process every record as the worker does; returns (seconds, state bytes written)."""
    processor = Processor(load_catalog(), Limits())
    backends = {p: DictBackend() for p in range(PARTITIONS)}
    offsets = dict.fromkeys(backends, 0)
    cache = RecordCache(1_000_000)
    written = 0
    headers = [(FORMAT_HEADER, b"2")]
    began = time.perf_counter()
    for partition, values in units(records, unit_records):
        first = offsets[partition]
        state = PartitionState(backends[partition], partition, processor.limits, cache, first)
        emitted = processor.process_records([(value, None, headers, first + index)
                                             for index, value in enumerate(values)], state, now)
        writes = state.finish()
        backends[partition].write(writes)
        state.commit_to_cache()
        offsets[partition] += len(values)
        written += sum(len(key) + len(value or b"") for key, value in writes.items())
        if digest is not None:
            for emit in emitted:
                digest.update(b"%s\x00%s\x00%s\x00" % (emit.topic.encode(), emit.key or b"-", emit.value))
            for key, value in writes.ordered():
                digest.update(key + b"\x00" + (value or b"-"))
    return time.perf_counter() - began, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.processor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is printed")
    parser.add_argument("--batch", type=int, default=500, help="input events per sequencer fetch (default 500)")
    parser.add_argument("--unit-records", type=int, default=1,
                        help="records per unit of work (1: no backlog; 16: a backlog, TOKENPLAN_UNIT_RECORDS_MAX)")
    parser.add_argument("--digest", action="store_true", help="also hash every output byte")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    args = parser.parse_args(argv)
    raws = [(orjson.dumps(event), event["account_id"].encode())
            for event in generate(args.events, args.accounts, args.seed)]
    records = batches(raws, args.batch)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, records, NOW, None, args.unit_records)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    best, written = min(run(records, NOW, None, args.unit_records) for _ in range(max(args.repeat, 1)))
    print(f"{len(raws)} events in {len(records)} records ({args.unit_records} per unit): {len(raws) / best:.0f} ev/s, "
          f"{best / len(raws) * 1e6:.1f} us/event, {written / len(raws):.0f} state bytes written per event")
    if args.digest:
        digest = hashlib.sha256()
        run(records, NOW, digest, args.unit_records)
        print(f"output digest {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
