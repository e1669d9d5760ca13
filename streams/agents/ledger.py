"""The ledger agent: ledger-log (and clock ticks) in, table state and out-topics out.

It holds no rules: `streams.agents.processor` decodes, the core decides, and this
module only moves bytes between Kafka, the tables and the processor.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from schemas import topics
from streams.agents import stats
from streams.agents.batching import in_event_context
from streams.agents.outbox import Outbox
from streams.agents.processor import Processor, change_instants
from streams.agents.records import AccountRecord, LogPosition, source_of
from streams.agents.status import expiry_index
from streams.agents.store import TableStore, check_position, mark_persisted
from streams.app import accounts_table, app, catalog, kafka_producer, ledger_inputs, limits, partitions_table, settings

logger = logging.getLogger(__name__)
processor = Processor(catalog, limits)
CLOCK_TOPIC = settings.topic(topics.CLOCK)


class IndexedStore(TableStore):
    """TableStore that tells the expiry index when an account's view will next change."""

    now: datetime  # set by the agent: one clock reading per batch

    def put(self, account_id: str, record: AccountRecord) -> None:
        super().put(account_id, record)
        for instant in change_instants(record.state, self.now):
            expiry_index.note(self.partition, account_id, instant)


def on_tick(store: IndexedStore, now: datetime):
    """Accounts of this partition whose view may have changed by `now`."""
    if expiry_index.is_built(store.partition):
        return processor.tick(store, expiry_index.due(store.partition, now), now)
    # First tick since an assignment: index every account, and check every account
    # once (its package may have ended while no worker owned the partition).
    account_ids = list(store.account_ids())
    entries = []
    for account_id in account_ids:
        record = store.get(account_id)
        if record is not None:
            entries.extend((instant, account_id) for instant in change_instants(record.state, now))
    expiry_index.build(store.partition, entries)
    return processor.tick(store, account_ids, now)


def apply_event(event, store: IndexedStore, now: datetime) -> list:
    """One ledger-log record or clock tick against its partition's store; what to publish."""
    message = event.message
    if message.topic == CLOCK_TOPIC:
        return on_tick(store, now)
    stats.count(message.topic)
    expected = check_position(message.partition, message.offset)
    if expected is not None:
        logger.warning("ledger-log partition %d: applying offset %d where %d was expected (%s)",
                       message.partition, message.offset, expected,
                       "a gap: records skipped" if message.offset > expected else "a rewind: records again")
    return processor.process(
        message.value if message.value is not None else b"", message.key,
        LogPosition(message.partition, message.offset), source_of(message.headers), store, now,
    )


@app.agent(ledger_inputs, concurrency=1)
async def apply_ledger_log(stream) -> None:
    """Batches: apply every event in log order, then write each touched account once.

    Nothing awaits until the batch is applied to the cached records. Its out-records are
    then delivered (`Outbox`), then its changelog records; only then are the records
    written to the local RocksDB stores, and only after this body returns does faust ack
    the batch's events. A crash anywhere in a batch redelivers it: until its changelog
    is delivered nothing of its state is anywhere, so it is applied again and its facts
    published again (same ids); after, a redelivered event is recognised by its
    ledger-log offset in the record (local, or recovered from the changelog), and its
    facts are already in Kafka. Each partition's local writes run with that partition's
    last event as faust's current event (RocksDB partition = changelog partition).
    """
    outbox, changelog = Outbox(settings.partitions), Outbox(settings.partitions)
    async for batch in stream.take_events(settings.ledger_batch_max, within=settings.batch_wait_s):
        now = datetime.now(timezone.utc)  # one clock reading per batch (status views only)
        stores: dict[int, IndexedStore] = {}
        last_event = {}
        for event in batch:
            partition = event.message.partition
            store = stores.get(partition)
            if store is None:
                store = stores[partition] = IndexedStore(accounts_table, partitions_table, partition,
                                                         settings.partitions, limits)
                store.now = now
            last_event[partition] = event
            for emit in apply_event(event, store, now):
                outbox.add(settings.topic(emit.topic), emit.key, emit.value, None if emit.key else partition)
        await outbox.deliver(kafka_producer())  # the facts first: never a changelog ahead of its facts
        for store in stores.values():
            store.flush(changelog)
        delivered = await changelog.deliver(kafka_producer())  # then the state, before anything local
        for partition, store in stores.items():
            with in_event_context(last_event[partition]):
                store.write_local()
        mark_persisted((accounts_table, partitions_table), delivered)
