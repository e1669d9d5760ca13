"""The operator page's throughput and lag, and where each figure comes from.

- *folded offsets*: `projector_offsets` (the next offset the projector folds, stored in
  the transaction of its rows): the projector's own truth;
- *high-water marks*: asked of Kafka (KAFKA_BOOTSTRAP_SERVERS) at most every few
  seconds; lag = high-water - folded, per partition, summed per topic;
- *records/s*: the growth of the folded offsets between this dashboard's samples
  (every SAMPLE_S, over the last WINDOW_S), so it needs two samples before it shows;
- with TOKENPLAN_WORKER_URL, the worker's /health `consumed` counts (input events the
  ledger applied) are sampled the same way.
Nothing is estimated: a figure that could not be read is shown as unknown, with why.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

__all__ = ["RateMeter", "Highwaters", "worker_consumed", "SAMPLE_S", "WINDOW_S"]

SAMPLE_S = 5.0
WINDOW_S = 60.0
KAFKA_TIMEOUT_S = 3.0


@dataclass
class RateMeter:
    """Counters sampled over time -> per-second rates over the last window."""

    window_s: float = WINDOW_S
    samples: deque = field(default_factory=deque)
    clock: Callable[[], float] = time.monotonic

    def record(self, counters: dict[str, int]) -> None:
        now = self.clock()
        self.samples.append((now, dict(counters)))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def rate(self, name: str) -> float | None:
        """Per second over the window; None until two samples at least a second apart."""
        if len(self.samples) < 2:
            return None
        (first_t, first), (last_t, last) = self.samples[0], self.samples[-1]
        if last_t - first_t < 1.0:
            return None
        return max(last.get(name, 0) - first.get(name, 0), 0) / (last_t - first_t)

    @property
    def span_s(self) -> float:
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0


class Highwaters:
    """Kafka's end offsets of the watched topics, cached for SAMPLE_S; errors kept as text."""

    def __init__(self, bootstrap: str | None) -> None:
        self.bootstrap = bootstrap
        self.values: dict[str, dict[int, int]] = {}
        self.error: str | None = None if bootstrap else "no Kafka configured"
        self.read_at: float | None = None
        self.lock = asyncio.Lock()

    @property
    def pending(self) -> bool:
        """No answer and no error yet: the first read is still to come (or under way)."""
        return self.bootstrap is not None and self.read_at is None and self.error is None

    async def first_read(self, topics: Iterable[str]) -> None:
        """Wait for the first read (started here or by the background loop); later calls return at once."""
        if self.pending:
            async with self.lock:
                if self.pending:
                    await self._refresh(topics)

    async def refresh(self, topics: Iterable[str]) -> None:
        async with self.lock:
            await self._refresh(topics)

    async def _refresh(self, topics: Iterable[str]) -> None:
        if not self.bootstrap:
            return
        try:
            self.values = await asyncio.wait_for(self._read(sorted(set(topics))), KAFKA_TIMEOUT_S * 2)
            self.error, self.read_at = None, time.monotonic()
        except Exception as error:  # shown on the page: the lag is then unknown, not zero
            self.error = f"Kafka at {self.bootstrap} not readable: {type(error).__name__} {error}".strip()

    async def _read(self, topics: list[str]) -> dict[str, dict[int, int]]:
        """Partitions from the admin client (a consumer only knows topics it follows), then end offsets."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        timeout_ms = int(KAFKA_TIMEOUT_S * 1000)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=timeout_ms)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        partitions = [TopicPartition(topic["topic"], part["partition"]) for topic in described
                      if topic["error_code"] == 0 for part in topic["partitions"]]
        if not partitions:
            return {}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    request_timeout_ms=timeout_ms)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        result: dict[str, dict[int, int]] = {}
        for partition, offset in ends.items():
            result.setdefault(partition.topic, {})[partition.partition] = offset
        return result


async def worker_consumed(session: aiohttp.ClientSession, worker_url: str) -> tuple[dict[str, int] | None, str | None]:
    """The worker's /health `consumed` counts, or (None, why)."""
    try:
        async with session.get(f"{worker_url.rstrip('/')}/health", timeout=aiohttp.ClientTimeout(total=2)) as reply:
            body = await reply.json(content_type=None)
            return {str(k): int(v) for k, v in (body.get("consumed") or {}).items()}, None
    except Exception as error:
        return None, f"worker at {worker_url} not readable: {type(error).__name__}"
