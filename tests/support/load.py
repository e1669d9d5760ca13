"""A seeded gateway load for the fault tests, and the balances it must produce."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaProducer

from schemas.events import parse_instant
from streams.config import Settings
from streams.ledger import Fold, load_catalog
from bench.workload import generate

@dataclass
class Load:
    """`events` usage events over `accounts` accounts, with retries, from one seed
    (bench.workload: the benchmarks' traffic). A few busy accounts take
    a large share of the events, and some of their events are retried from far back
    (after at least 600 of their own events), so the proof below also shows that a
    retry is charged once however many events of its account came in between."""

    seed: int
    accounts: list[str]
    day: datetime
    events: int
    plans: list[dict] = field(default_factory=list)
    usage: list[dict] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        workload = generate(self.events, self.accounts, self.day, self.seed)
        self.plans, self.usage, self.wire = workload.plans, workload.usage, workload.wire
        #: The accounts retried from far back (bench.workload BUSY_ACCOUNTS).
        self.busy = workload.busy

    async def publish(self, bootstrap: str, topic: str, batch: int = 500, pause_s: float = 0.01) -> None:
        """Send the usage (retries included) in batches; `sent` tells how far it got."""
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                    enable_idempotence=True, request_timeout_ms=60000)
        await producer.start()
        try:
            for start in range(0, len(self.wire), batch):
                futures = [await producer.send(topic, orjson.dumps(event), key=event["account_id"].encode())
                           for event in self.wire[start:start + batch]]
                await asyncio.gather(*futures)
                self.sent = start + len(futures)
                await asyncio.sleep(pause_s)
        finally:
            await producer.stop()

    def expected(self, as_of: str) -> dict[str, dict]:
        """What every account must show: each distinct event charged once, none lost."""
        ledger = Fold(load_catalog(), Settings.from_env().limits)
        for event in self.plans + self.usage:
            ledger.feed(orjson.dumps(event))
        return ledger.result(parse_instant(as_of))["accounts"]
