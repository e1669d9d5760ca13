"""The projector's loop: fetch a batch, fold it in one transaction, then publish its alerts.

Its own consumer group (`<app_id>-projector`) spreads partitions over projectors, but
where to resume comes from the database (`projector_offsets`, written with the rows):
on every assignment the consumer seeks there (offset 0 when the database has none), so
Kafka's committed offsets are only a lag gauge for operators. Alerts are published after
the commit that decided them; alerts not yet acknowledged are published again at start.
"""
from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from sqlalchemy import Engine

from projections.alerts import ALERTS_TOPIC, Alert, mark_published, unpublished
from projections.facts import Record
from projections.fold import BatchResult, Fold
from projections.metrics import ProjectorMetrics, serve
from projections.settings import ProjectorSettings
from projections.store import create_schema, load_offsets, open_engine
from projections.webhooks import WebhookSender

__all__ = ["Projector", "Totals", "SOURCE_TOPICS"]

#: The topics folded (short names): the ledger's out-topics (schemas.topics.ALL_OUTPUTS), the usage
#: policy's violations (POLICY) and its facts (POLICY_FACTS; see projections.policy).
SOURCE_TOPICS = ("balance-changed", "quota-exhausted", "quota-status", "rejected", "policy", "policy-facts")
#: How soon the consumer notices topics created after it started (the worker creates them).
METADATA_MAX_AGE_MS = 5000


@dataclass
class Totals:
    """Running counts for the progress lines (and tests)."""

    folded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    batches: int = 0
    duplicates: int = 0
    stale: int = 0
    unusable: int = 0
    alerts_decided: int = 0
    alerts_published: int = 0
    lag: int | None = None

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        for kind, count in result.folded.items():
            self.folded[kind] += count
        self.duplicates += result.duplicates
        self.stale += result.stale
        self.unusable += result.unusable
        self.alerts_decided += len(result.alerts)

    def line(self, rate: float) -> str:
        kinds = ", ".join(f"{kind} {self.folded.get(kind, 0)}" for kind in SOURCE_TOPICS)
        lag = "?" if self.lag is None else str(self.lag)
        return (f"projector: {sum(self.folded.values())} facts folded ({kinds}) in {self.batches} batches, "
                f"{self.duplicates} duplicates skipped, {self.unusable} unusable, alerts {self.alerts_decided} "
                f"decided / {self.alerts_published} published, lag {lag}, {rate:.0f} records/s")


class _SeekToStored(ConsumerRebalanceListener):
    """On assignment, resume each partition where the database says (0 when it has nothing)."""

    def __init__(self, projector: "Projector") -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked) -> None:  # offsets live in the database
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        stored = await asyncio.to_thread(self.projector.stored_offsets)
        for partition in assigned:
            offset = stored.get((partition.topic, partition.partition), 0)
            self.projector.next_offsets[(partition.topic, partition.partition)] = offset
            self.projector.consumer.seek(partition, offset)


class Projector:
    """`tokenplan projector`: run() until stopped (or idle, for back-fills and tests)."""

    def __init__(self, settings: ProjectorSettings, engine: Engine | None = None, out: TextIO = sys.stderr) -> None:
        self.settings = settings
        self.engine = engine or open_engine(settings.projections_url)
        self.out = out
        self.fold = Fold(settings.thresholds, settings.webhook_url)
        self.topics = {settings.topic(name): name for name in SOURCE_TOPICS}
        self.totals = Totals()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.webhooks: WebhookSender | None = None
        #: (topic, partition) -> the next offset stored with the rows (the lag gauge's base).
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.metrics = ProjectorMetrics(SOURCE_TOPICS, settings.thresholds)
        self.metrics.register_scrape(self.lag_by_partition,
                                     lambda: 0 if self.webhooks is None else self.webhooks.failed_attempts)
        #: Called after each commit with the batch's records and the commit's wall-clock time
        #: (time.time()); the bench measures fact -> row lag with it. None: nothing called.
        self.on_commit: Callable[[list[Record], float], None] | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        with self.engine.connect() as connection:
            return load_offsets(connection, self.topics)

    async def _ensure_alerts_topic(self) -> None:
        """Create tokenplan.alerts (the broker may refuse auto-creation) with the worker's partition count."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap)
        await admin.start()
        try:
            topic = self.settings.topic(ALERTS_TOPIC)
            if topic not in await admin.list_topics():
                try:
                    await admin.create_topics([NewTopic(topic, self.settings.partitions, self.settings.replication)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def _publish(self, alerts: list[tuple[str, str, bytes]]) -> None:
        """Send (alert_id, account, body) keyed by account; mark them once Kafka acknowledged."""
        if not alerts:
            return
        assert self.producer is not None
        futures = [await self.producer.send(self.settings.topic(ALERTS_TOPIC), body, key=account.encode())
                   for _id, account, body in alerts]
        await asyncio.gather(*futures)
        await asyncio.to_thread(mark_published, self.engine, [identifier for identifier, _a, _b in alerts])
        self.totals.alerts_published += len(alerts)
        if self.webhooks is not None:
            self.webhooks.wake.set()

    async def _republish(self) -> None:
        def load() -> list[tuple[str, str, bytes]]:
            with self.engine.connect() as connection:
                return unpublished(connection)
        while pending := await asyncio.to_thread(load):
            self.say(f"projector: publishing {len(pending)} alerts decided before the last stop")
            await self._publish(pending)

    def _fold(self, records: list[Record]) -> BatchResult:
        with self.engine.begin() as connection:  # rows and offsets commit together, or neither
            return self.fold.apply(connection, records)

    def _fold_timed(self, records: list[Record]) -> tuple[BatchResult, float]:
        """The fold and the wall-clock instant its transaction committed."""
        result = self._fold(records)
        return result, time.time()

    def lag_by_partition(self) -> list[tuple[str, int, int]]:
        """(topic short name, partition, high-water minus stored next offset) per assigned partition.

        Read at scrape time: a partition not yet fetched (no high-water) or not yet sought
        is left out rather than failing the scrape."""
        consumer = self.consumer
        if consumer is None:
            return []
        try:
            assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        except Exception:
            return []
        lags = []
        for partition in assigned:
            highwater = consumer.highwater(partition)
            stored = self.next_offsets.get((partition.topic, partition.partition))
            if highwater is None or stored is None:
                continue
            lags.append((self.topics.get(partition.topic, partition.topic), partition.partition,
                         max(highwater - stored, 0)))
        return lags

    def _records(self, batch: dict) -> list[Record]:
        records = []
        for partition, messages in batch.items():
            kind = self.topics[partition.topic]
            records.extend(Record(kind, partition.topic, partition.partition, message.offset, message.timestamp,
                                  message.value, message.key) for message in messages)
        return records

    async def _step(self) -> int:
        """One fetch -> one transaction -> alerts out; returns the records fetched."""
        assert self.consumer is not None
        batch = await self.consumer.getmany(timeout_ms=self.settings.poll_ms, max_records=self.settings.batch_max)
        records = self._records(batch)
        if not records:
            return 0
        began = time.perf_counter()
        result, committed_at = await asyncio.to_thread(self._fold_timed, records)
        self.metrics.batch_committed(result.folded, result.duplicates, [(a.kind, a.threshold) for a in result.alerts],
                                     time.perf_counter() - began)
        self.next_offsets.update(result.offsets)
        if self.on_commit is not None:
            self.on_commit(records, committed_at)
        self.totals.add(result)
        await self._publish([(a.alert_id, a.account_id, a.body) for a in result.alerts])
        offsets = {TopicPartition(topic, partition): offset for (topic, partition), offset in result.offsets.items()}
        try:  # a lag gauge for operators only: the projector never resumes from these
            await self.consumer.commit(offsets)
        except Exception as error:  # a rebalance in between: harmless, the database has the truth
            self.say(f"projector: Kafka offset commit skipped ({type(error).__name__})")
        await self._update_lag(batch)
        return len(records)

    async def _update_lag(self, batch: dict) -> None:
        assert self.consumer is not None
        total = 0
        for partition in self.consumer.assignment():
            highwater = self.consumer.highwater(partition)
            if highwater is None:
                continue
            total += max(highwater - await self.consumer.position(partition), 0)
        self.totals.lag = total

    async def run(self, stop: asyncio.Event | None = None, idle_exit_s: float | None = None) -> Totals:
        """Project until `stop` is set, or until nothing arrived for `idle_exit_s` seconds."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(create_schema, self.engine)
        await self._ensure_alerts_topic()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all",
                                         enable_idempotence=True, linger_ms=5)
        await self.producer.start()
        tasks: list[asyncio.Task] = []
        server = await self._serve_metrics()
        try:
            await self._republish()
            if self.settings.webhook_url:
                s = self.settings
                self.webhooks = WebhookSender(self.engine, s.webhook_url, s.webhook_secret, s.webhook_attempts_max,
                                              s.webhook_backoff_s, s.webhook_backoff_max_s, s.webhook_timeout_s,
                                              s.webhook_batch_max)
                tasks.append(asyncio.create_task(self.webhooks.run(stop)))
            await self._consume(stop, idle_exit_s)
        finally:
            stop.set()
            for task in tasks:
                await task
            await self.producer.stop()
            if server is not None:
                await server.cleanup()
        return self.totals

    async def _serve_metrics(self):
        """GET /metrics on settings.metrics_port (0: none). A taken port is said and skipped:
        folding matters more than being scraped."""
        if not self.settings.metrics_port:
            return None
        try:
            runner = await serve(self.metrics, self.settings.metrics_port)
        except OSError as error:
            self.say(f"projector: no /metrics: port {self.settings.metrics_port} unusable ({error.strerror or error})")
            return None
        self.say(f"projector: metrics on http://127.0.0.1:{self.settings.metrics_port}/metrics")
        return runner

    async def _consume(self, stop: asyncio.Event, idle_exit_s: float | None) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap, group_id=self.settings.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=METADATA_MAX_AGE_MS,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(self.settings.session_timeout_ms // 3, 1000))
        await self.consumer.start()
        self.consumer.subscribe(list(self.topics), listener=_SeekToStored(self))
        self.say(f"projector: group {self.settings.group_id}, topics {', '.join(self.topics)}, "
                 f"database {self.engine.url.render_as_string(hide_password=True)}")
        started = last_line = last_data = time.monotonic()
        fetched_since_line = 0
        try:
            while not stop.is_set():
                fetched = await self._step()
                now = time.monotonic()
                fetched_since_line += fetched
                if fetched:
                    last_data = now
                if now - last_line >= self.settings.progress_s:
                    self.say(self.totals.line(fetched_since_line / max(now - last_line, 1e-9)))
                    last_line, fetched_since_line = now, 0
                if idle_exit_s is not None and now - last_data >= idle_exit_s and self.consumer.assignment():
                    break
        finally:
            elapsed = max(time.monotonic() - started, 1e-9)
            self.say(self.totals.line(sum(self.totals.folded.values()) / elapsed))
            await self.consumer.stop()
