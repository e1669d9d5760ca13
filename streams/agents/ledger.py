"""The ledger agent: ledger-log records (and clock ticks) in, table state and out-topics out.

It holds no rules: `streams.agents.processor` decodes, the core decides, and this
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
from datetime import datetime, timezone

from faust.types import TP
from rocksdict import WriteBatch

from schemas import topics
from streams.agents import stats
from streams.agents.outbox import Outbox
from streams.agents.processor import LedgerHoleError, Processor, change_instants
from streams.agents.state_store import PartitionState, RecordCache, Writes
from streams.agents.status import expiry_index, record_cache
from streams.app import accounts_table, app, catalog, kafka_producer, ledger_inputs, limits, settings

logger = logging.getLogger(__name__)
processor = Processor(catalog, limits)
CLOCK_TOPIC = settings.topic(topics.CLOCK)
#: Exit status of a worker that must start again from its committed offsets (a hole in
#: ledger-log, or a unit of work Kafka would not take): `tokenplan worker` restarts it.
EXIT_RESTART = 75


class RocksBackend:
    """One partition's RocksDB (faust's store of the accounts table), read directly."""

    def __init__(self, db) -> None:
        self.db = db

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def scan(self, prefix: bytes):
        for key, value in self.db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value


def partition_state(partition: int, offset: int | None, cache: RecordCache) -> PartitionState:
    """The state of `partition` as the table's local RocksDB holds it."""
    db = accounts_table.data._db_for_partition(partition)
    return PartitionState(RocksBackend(db), partition, limits, cache, offset)


def on_tick(state: PartitionState, now: datetime):
    """Accounts of this partition whose view may have changed by `now`."""
    if expiry_index.is_built(state.partition):
        return processor.tick(state, expiry_index.due(state.partition, now), now)
    # First tick since an assignment: index every account, and check every account
    # once (its package may have ended while no worker owned the partition).
    account_ids = state.account_ids()
    entries = []
    for account_id in account_ids:
        record = state.get(account_id)
        if record is not None:
            entries.extend((instant, account_id) for instant in change_instants(record.state, now))
    expiry_index.build(state.partition, entries)
    return processor.tick(state, account_ids, now)


async def make_durable(emitted, writes: Writes, partition: int) -> None:
    """Facts delivered, then the state's changelog delivered, then the local RocksDB written."""
    facts = Outbox(settings.partitions)
    for emit in emitted:
        facts.add(settings.topic(emit.topic), emit.key, emit.value, None if emit.key else partition)
    producer = kafka_producer()
    if len(facts):
        await facts.send(producer)
    changelog = accounts_table.changelog_topic.get_topic_name()
    ordered = writes.ordered()
    state_box = Outbox(settings.partitions)
    for key, value in ordered:
        state_box.add(changelog, key, value, partition)
    delivered = await state_box.send(producer)
    store = accounts_table.data
    db = store._dbs.get(partition)
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
        store.set_persisted_offset(TP(changelog, partition), offset)


def stop_for_restart(reason: str) -> None:
    """Stop at once (no ack, no commit) and let `tokenplan worker` start again from the
    committed offsets: after a hole, or a unit of work Kafka would not take."""
    logger.critical("%s; restarting from the committed offsets", reason)
    logging.shutdown()
    os._exit(EXIT_RESTART)


def prepare_unit(events: list, now: datetime) -> tuple[PartitionState, list]:
    """Apply a unit's records (consecutive, one partition) and ticks to its state (no I/O but reads)."""
    partition = events[0].message.partition
    records = [e.message for e in events if e.message.topic != CLOCK_TOPIC]
    state = partition_state(partition, records[0].offset if records else None, record_cache)
    emitted: list = []
    if records:
        try:
            emitted = processor.process_records([(m.value, m.key, m.headers, m.offset) for m in records], state, now)
        except LedgerHoleError as error:
            stop_for_restart(str(error))
        stats.count(records[0].topic, state.events_count)
    if len(records) < len(events):  # one tick covers every tick waiting in the unit
        emitted += on_tick(state, now)
    return state, emitted


class Units:
    """The applier's units of work: at most one in flight per partition; records that arrive
    meanwhile wait, and the next unit takes them all (up to TOKENPLAN_UNIT_RECORDS_MAX).

    Why: a unit pays a fixed cost (two delivery round trips, the partition record, the
    changelog run); under a live load of small records, taking the waiting ones together
    keeps that cost per unit instead of per record. With no backlog a unit is one record:
    nothing waits longer than the unit before it. Acks are manual, after durability, for
    every record of the unit (the watermark check makes the records consecutive).
    """

    def __init__(self, stream, records_max: int) -> None:
        self.stream = stream
        self.records_max = records_max
        self.in_flight: dict[int, asyncio.Future] = {}
        self.waiting: dict[int, list] = {}

    async def add(self, event) -> None:
        """Take one event from faust: start a unit now, or let it wait for the partition's next."""
        partition = event.message.partition
        waiting = self.waiting.setdefault(partition, [])
        waiting.append(event)
        previous = self.in_flight.get(partition)
        if previous is None or previous.done():
            self._start(partition)
        elif len(waiting) >= self.records_max:
            await previous  # back-pressure: the partition's next unit is full

    def _start(self, partition: int) -> None:
        events = self.waiting.pop(partition, [])
        if not events:
            return
        now = datetime.now(timezone.utc)
        try:
            state, emitted = prepare_unit(events, now)
        except Exception as error:  # our own bug (an invariant): stop before anything is acked
            logger.exception("ledger-log partition %d: unit of work failed", partition)
            stop_for_restart(f"ledger-log partition {partition}: {error!r}")
        self.in_flight[partition] = asyncio.ensure_future(self._finish(events, state, emitted, now))

    async def _finish(self, events: list, state: PartitionState, emitted: list, now: datetime) -> None:
        """Make a unit durable, ack its records, then start the partition's next unit."""
        writes = state.finish()
        try:
            if writes or emitted:
                await make_durable(emitted, writes, state.partition)
        except Exception as error:  # Kafka refused past its own retries: never ack, never go on
            stop_for_restart(f"ledger-log partition {state.partition}: unit of work not delivered ({error!r})")
        state.commit_to_cache()
        for account_id, record in state.written_records():
            for instant in change_instants(record.state, now):
                expiry_index.note(state.partition, account_id, instant)
        for event in events:
            await self.stream.ack(event)
        self._start(state.partition)


@app.agent(ledger_inputs, concurrency=1)
async def apply_ledger_log(stream) -> None:
    """Units of work per partition (`Units`); units of different partitions are made durable
    concurrently, and a partition's next unit reads the state its previous one wrote.

    Acks are manual (`noack`) and come after durability, so faust never commits past a unit
    still in flight (and the commit guard of streams.faust_fixes caps commits at the lowest
    unacked offset).
    """
    manual = stream.noack()
    units = Units(manual, settings.unit_records_max)
    async for event in manual.events():
        await units.add(event)
