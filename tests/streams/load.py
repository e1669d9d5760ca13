"""A seeded gateway load for the fault tests, and the balances it must produce."""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from schemas.events import parse_instant
from streams.config import Settings
from streams.ledger import Ledger, load_catalog
from tests.streams import events as ev

#: Share of usage events a gateway sends twice (a retry), sometimes much later.
RETRY_SHARE = 0.05


@dataclass
class Load:
    """`events` usage events over `accounts` accounts, with retries, from one seed."""

    seed: int
    accounts: list[str]
    day: datetime
    events: int
    plans: list[dict] = field(default_factory=list)
    usage: list[dict] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.plans = [ev.purchase(account_id, self.day, tier="max") for account_id in self.accounts]
        for index in range(self.events):
            account_id = rng.choice(self.accounts)
            at = self.day + timedelta(hours=1, seconds=index)
            self.usage.append(ev.usage(account_id, at, model=rng.choice(["mimo-v2.5", "mimo-v2-omni", "mimo-v2.5-tts"]),
                                       hit=rng.randint(0, 5000), miss=rng.randint(0, 2000), output=rng.randint(0, 800),
                                       event_id=f"load-{self.seed}-{index}"))
        self.wire = list(self.usage)
        for event in self.usage:
            if rng.random() < RETRY_SHARE:
                self.wire.insert(rng.randint(0, len(self.wire)), event)

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
        ledger = Ledger(load_catalog(), Settings.from_env().limits)
        for event in self.plans + self.usage:
            ledger.feed(orjson.dumps(event))
        return ledger.result(parse_instant(as_of))["accounts"]
