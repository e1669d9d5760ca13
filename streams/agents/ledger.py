"""The ledger agent: ledger-log (and clock ticks) in, table state and out-topics out.

It holds no rules: `streams.agents.processor` decodes, the core decides, and this
module only moves bytes between Kafka, the tables and the processor.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from schemas import topics
from streams.agents import stats
from streams.agents.processor import Processor, change_instants
from streams.agents.records import AccountRecord, LogPosition, source_of
from streams.agents.status import expiry_index
from streams.agents.store import TableStore, check_position
from streams.app import accounts_table, app, catalog, ledger_inputs, limits, out_topics, partitions_table, settings

logger = logging.getLogger(__name__)
processor = Processor(catalog, limits)
CLOCK_TOPIC = settings.topic(topics.CLOCK)


class IndexedStore(TableStore):
    """TableStore that tells the expiry index when an account's view will next change."""

    now: datetime  # set by the agent: one clock reading per event

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


@app.agent(ledger_inputs, concurrency=1)
async def apply_ledger_log(stream) -> None:
    """One event at a time: table writes go to the changelog partition of the current event."""
    async for event in stream.events():
        message = event.message
        store = IndexedStore(accounts_table, partitions_table, message.partition, settings.partitions, limits)
        now = store.now = datetime.now(timezone.utc)
        if message.topic == CLOCK_TOPIC:
            emitted = on_tick(store, now)
        else:
            expected = check_position(message.partition, message.offset)
            if expected is not None:
                logger.warning("ledger-log partition %d: applying offset %d where %d was expected (%s)",
                               message.partition, message.offset, expected,
                               "a gap: records skipped" if message.offset > expected else "a rewind: records again")
            emitted = processor.process(
                message.value if message.value is not None else b"", message.key,
                LogPosition(message.partition, message.offset), source_of(message.headers), store, now,
            )
            stats.count(message.topic)
        for emit in emitted:  # buffered; faust flushes the producer before committing offsets
            out_topics[emit.topic].send_soon(key=emit.key, value=emit.value)
