"""The applier agent: ledger-log records (and clock ticks) in, table state and out-topics out.

It holds no rules: `streams.processing.processor` decodes, the core decides, and this
module only moves bytes between Kafka, the table and the processor.

One ledger-log record (v2: a batch of one partition's events) is one unit of work,
made durable in this order before faust may ack it (acks are manual):
1. the facts (balance-changed, quota-exhausted, quota-status, rejected) are delivered;
2. the record's state writes go to the table's changelog partition, in one ordered run
   (event memory, accounts, the partition record last), and are delivered;
3. they are written to the local RocksDB in one atomic WriteBatch, and faust's
   persisted changelog offset is moved past them.
A crash anywhere redelivers the record: if nothing of it reached the changelog it is
applied again from the same state (same facts, same ids); if a prefix did, the
accounts whose record holds this offset are skipped and the memory values it wrote
are ignored (`PartitionState`). faust's per-write path (one producer future and log
record per table write) is not used: the writes go as record batches (`Outbox`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from faust.types import TP
from rocksdict import WriteBatch

from schemas import topics
from streams.processing.processor import Emit, LedgerHoleError, Processor, change_instants
from streams.processing.state_store import PartitionState, Writes
from streams.worker.app import Wiring
from streams.worker.metrics import WorkerMetrics
from streams.worker.outbox import Outbox
from streams.worker.runtime import PartitionRuntime, WorkerRuntime

logger = logging.getLogger(__name__)
#: Exit status of a worker that must start again from its committed offsets (a hole in
#: ledger-log, or a unit of work Kafka would not take): `tokenplan worker` restarts it.
EXIT_RESTART = 75


class RocksBackend:
    """One partition's RocksDB (faust's store of the accounts table), read directly."""

    def __init__(self, db) -> None:
        self.db = db

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value


def stop_for_restart(reason: str) -> None:
    """Stop at once (no ack, no commit) and let `tokenplan worker` start again from the
    committed offsets: after a hole, or a unit of work Kafka would not take."""
    logger.critical("%s; restarting from the committed offsets", reason)
    logging.shutdown()
    os._exit(EXIT_RESTART)


def tick(processor: Processor, state: PartitionState, runtime: PartitionRuntime, now: datetime) -> list[Emit]:
    """Accounts of the partition whose view may have changed by `now`, from its expiry index."""
    if runtime.expiry.is_built:
        return processor.tick(state, runtime.expiry.due(now), now)
    # First tick since an assignment: index every account, and check every account
    # once (its package may have ended while no worker owned the partition).
    account_ids = state.account_ids()
    entries = []
    for account_id in account_ids:
        record = state.get(account_id)
        if record is not None:
            entries.extend((instant, account_id) for instant in change_instants(record.state, now))
    runtime.expiry.build(entries)
    return processor.tick(state, account_ids, now)


class Applier:
    """The agent body and the steps of a unit of work, for one worker."""

    def __init__(self, wiring: Wiring, runtime: WorkerRuntime, metrics: WorkerMetrics | None = None) -> None:
        self.wiring = wiring
        self.settings = wiring.settings
        self.runtime = runtime
        self.metrics = metrics if metrics is not None else WorkerMetrics.for_settings(wiring.settings)
        #: When the oldest record waiting for each partition arrived (perf_counter): a unit's latency starts there.
        self.arrived: dict[int, float] = {}
        self.processor = Processor(wiring.catalog, wiring.settings.limits)
        self.clock_topic = wiring.settings.topic(topics.CLOCK)
        #: Out-topic short name -> full name (a unit publishes many facts to few topics).
        self.topic_names = {name: wiring.settings.topic(name) for name in topics.ALL_OUTPUTS}

    def partition_state(self, partition: int, offset: int | None) -> PartitionState:
        """The state of `partition` as the table's local RocksDB holds it."""
        db = self.wiring.accounts_table.data._db_for_partition(partition)
        return PartitionState(RocksBackend(db), partition, self.settings.limits,
                              self.runtime.partition(partition).records, offset)

    def prepare_unit(self, events: list, now: datetime) -> tuple[PartitionState, list[Emit]]:
        """Apply a unit's records (consecutive, one partition) and ticks to its state (no I/O but reads)."""
        partition = events[0].message.partition
        records = [e.message for e in events if e.message.topic != self.clock_topic]
        state = self.partition_state(partition, records[0].offset if records else None)
        emitted: list[Emit] = []
        if records:
            batch = [(m.value, m.key, m.headers, m.offset) for m in records]
            next_offset = state.get_partition().next_offset  # before the unit moves it (read once, cached)
            try:
                emitted = self.processor.process_records(batch, state, now)
            except LedgerHoleError as error:
                stop_for_restart(str(error))
            self.runtime.count(records[0].topic, state.events_count)
            self.metrics.count_applied(batch, next_offset, state.events_count, emitted)
        if len(records) < len(events):  # one tick covers every tick waiting in the unit
            emitted += tick(self.processor, state, self.runtime.partition(partition), now)
        return state, emitted

    async def make_durable(self, emitted: list[Emit], writes: Writes, partition: int) -> None:
        """Facts delivered, then the state's changelog delivered, then the local RocksDB written."""
        settings, table = self.settings, self.wiring.accounts_table
        producer = self.wiring.kafka_producer()
        facts = Outbox(settings.partitions)
        names = self.topic_names
        for emit in emitted:
            facts.add(names[emit.topic], emit.key, emit.value, None if emit.key else partition)
        if len(facts):
            await facts.send(producer)
        changelog = table.changelog_topic.get_topic_name()
        ordered = writes.ordered()
        state_box = Outbox(settings.partitions)
        state_box.extend(changelog, partition, ordered)
        delivered = await state_box.send(producer)
        db = table.data._dbs.get(partition)
        if db is None:  # revoked while delivering: the new owner recovers it from the changelog
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in ordered:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        db.write(batch)
        offset = delivered.get((changelog, partition))
        if offset is not None:
            table.data.set_persisted_offset(TP(changelog, partition), offset)

    async def finish_unit(self, stream, events: list, state: PartitionState, emitted: list[Emit],
                          now: datetime, arrived: float) -> None:
        """Make a unit durable, ack its records, then start the partition's next unit."""
        writes = state.finish()
        try:
            if writes or emitted:
                await self.make_durable(emitted, writes, state.partition)
        except Exception as error:  # Kafka refused past its own retries: never ack, never go on
            stop_for_restart(f"ledger-log partition {state.partition}: unit of work not delivered ({error!r})")
        if state.events_count:  # clock ticks alone are not timed: they would drown the ledger's units
            self.metrics.unit_durable(time.perf_counter() - arrived)
        state.commit_to_cache()
        partition_runtime = self.runtime.partition(state.partition)
        partition_runtime.applied = {}
        expiry = partition_runtime.expiry
        for account_id, record in state.written_records():
            for instant in change_instants(record.state, now):
                expiry.note(account_id, instant)
        for event in events:
            await stream.ack(event)
        self.start_unit(stream, state.partition)

    def start_unit(self, stream, partition: int) -> None:
        """Take every record waiting for `partition` as its next unit (none waiting: nothing)."""
        events = self.runtime.waiting.pop(partition, [])
        arrived = self.arrived.pop(partition, None)
        if not events:
            return
        now = datetime.now(timezone.utc)
        try:
            state, emitted = self.prepare_unit(events, now)
        except Exception as error:  # our own bug (an invariant): stop before anything is acked
            logger.exception("ledger-log partition %d: unit of work failed", partition)
            stop_for_restart(f"ledger-log partition {partition}: {error!r}")
        self.runtime.partition(partition).applied = state.applied_records()
        self.runtime.in_flight[partition] = asyncio.ensure_future(
            self.finish_unit(stream, events, state, emitted, now, time.perf_counter() if arrived is None else arrived))

    async def add(self, stream, event) -> None:
        """Take one event from faust: start a unit now, or let it wait for the partition's next.

        At most one unit is in flight per partition (the next reads the state it writes);
        records that arrive meanwhile wait, and the next unit takes them all, up to
        TOKENPLAN_UNIT_RECORDS_MAX. Why: a unit pays a fixed cost (two delivery round trips,
        the partition record, the changelog run); under a live load of small records,
        taking the waiting ones together keeps it per unit instead of per record. With no
        backlog a unit is one record.
        """
        message = event.message
        partition = message.partition
        if message.topic != self.clock_topic:
            self.metrics.record_arrived(message.timestamp, time.time())
        waiting = self.runtime.waiting.setdefault(partition, [])
        if not waiting:
            self.arrived[partition] = time.perf_counter()
        waiting.append(event)
        previous = self.runtime.in_flight.get(partition)
        if previous is None or previous.done():
            self.start_unit(stream, partition)
        elif len(waiting) >= self.settings.unit_records_max:
            await previous  # back-pressure: the partition's next unit is full

    async def run(self, stream) -> None:
        """Units of work per partition, made durable concurrently across partitions.

        Acks are manual (`noack`) and come after durability, so faust never commits past a
        unit still in flight (and the commit guard of streams.worker.faust_fixes caps
        commits at the lowest unacked offset).
        """
        manual = stream.noack()
        async for event in manual.events():
            await self.add(manual, event)


def register(wiring: Wiring, runtime: WorkerRuntime, metrics: WorkerMetrics | None = None) -> Applier:
    """Add the applier agent to the app (concurrency 1: faust-streaming #606)."""
    applier = Applier(wiring, runtime, metrics)

    async def apply_ledger_log(stream) -> None:
        await applier.run(stream)

    wiring.app.agent(wiring.applier_inputs, concurrency=1, name="apply_ledger_log")(apply_ledger_log)
    return applier
