"""The floor of faust itself here: consume N pre-produced events with a bare agent.

    python -m bench.faust_floor --mode none|table|take|take-table [--events 20000]

`none` only iterates `stream.events()`; `table` also writes a 2 KB value to a RocksDB
table per event (a changelog message each), as the ledger does. `take`
iterates `stream.take_events(--batch)`; `take-table` also writes each key touched in a
batch once, in the context of that key's partition's last event (what the ledger does). Compare with the
raw-client baseline of `tokenplan bench` to see what faust costs per event
(docs/performance.md). Not a test.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid

import orjson


async def preproduce(bootstrap: str, topic: str, events: int, keys: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 8, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    futures = [await producer.send(topic, orjson.dumps({"i": i, "pad": "x" * 200}), key=f"acc{i % keys}".encode())
               for i in range(events)]
    await asyncio.gather(*futures)
    await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["none", "table", "take", "take-table"], default="none")
    parser.add_argument("--batch", type=int, default=500, help="take_events batch size (take modes)")
    parser.add_argument("--keys", type=int, default=1000, help="distinct message keys")
    parser.add_argument("--value-bytes", type=int, default=2_000, help="size of each table value written")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    import faust

    import weakref
    from contextlib import contextmanager

    from faust.streams import _current_event

    @contextmanager
    def in_event_context(event):  # faust's RocksDB store takes a write's partition from the current event
        token = _current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            _current_event.reset(token)

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    name = f"floor-{uuid.uuid4().hex[:8]}"
    asyncio.run(preproduce(bootstrap, f"{name}-in", args.events, args.keys))
    app = faust.App(name, broker=f"kafka://{bootstrap}", store="rocksdb://", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="faust-floor-"), key_serializer="raw", value_serializer="raw",
                    topic_partitions=8, consumer_auto_offset_reset="earliest")
    source = app.topic(f"{name}-in", partitions=8, key_type=bytes, value_type=bytes)
    table = app.Table(f"{name}-t", partitions=8, key_type=bytes, value_type=bytes)
    state = {"n": 0, "began": 0.0}

    value = b"x" * args.value_bytes

    def count(n: int) -> None:
        state["n"] += n
        if state["n"] >= args.events:
            rate = args.events / (time.monotonic() - state["began"])
            print(f"faust floor, mode={args.mode}: {rate:.0f} events/s", file=sys.__stdout__, flush=True)
            os._exit(0)

    @app.agent(source, concurrency=1)
    async def consume(stream) -> None:
        logging.getLogger().setLevel(logging.WARNING)  # `app.main` leaves the root logger at DEBUG
        if args.mode in ("none", "table"):
            async for event in stream.events():
                state["began"] = state["began"] or time.monotonic()
                if args.mode == "table":
                    table[event.message.key] = value
                count(1)
        async for batch in stream.take_events(args.batch, within=0.01):
            state["began"] = state["began"] or time.monotonic()
            if args.mode == "take-table":
                last: dict[bytes, object] = {}
                for event in batch:
                    last[event.message.key] = event
                for key, event in last.items():
                    with in_event_context(event):
                        table[key] = value
            count(len(batch))
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
