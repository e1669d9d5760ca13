"""The floor of faust itself here: consume N pre-produced events with a bare agent.

    python -m streams.benchmarks.faust_floor --mode none|table [--events 20000]

`none` only iterates `stream.events()`; `table` also writes a 2 KB value to a RocksDB
table per event (a changelog message each), as the ledger does. Compare with the
raw-client baseline of `tokenplan bench` to see what faust costs per event
(docs/performance.md). Not a test.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid

import orjson


async def preproduce(bootstrap: str, topic: str, events: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 8, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    futures = [await producer.send(topic, orjson.dumps({"i": i, "pad": "x" * 200}), key=f"acc{i % 1000}".encode())
               for i in range(events)]
    await asyncio.gather(*futures)
    await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.benchmarks.faust_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["none", "table"], default="none")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    import faust

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    name = f"floor-{uuid.uuid4().hex[:8]}"
    asyncio.run(preproduce(bootstrap, f"{name}-in", args.events))
    app = faust.App(name, broker=f"kafka://{bootstrap}", store="rocksdb://", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="faust-floor-"), key_serializer="raw", value_serializer="raw",
                    topic_partitions=8, consumer_auto_offset_reset="earliest")
    source = app.topic(f"{name}-in", partitions=8, key_type=bytes, value_type=bytes)
    table = app.Table(f"{name}-t", partitions=8, key_type=bytes, value_type=bytes)
    state = {"n": 0, "began": 0.0}

    @app.agent(source, concurrency=1)
    async def consume(stream) -> None:
        async for event in stream.events():
            state["began"] = state["began"] or time.monotonic()
            if args.mode == "table":
                table[event.message.key] = event.message.value * 10
            state["n"] += 1
            if state["n"] == args.events:
                print(f"faust floor, mode={args.mode}: {args.events / (time.monotonic() - state['began']):.0f} events/s",
                      file=sys.__stdout__, flush=True)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
