"""Clock ticks for expiry: status changes that come from time passing, not from events.

The leader worker sends a tick to every partition of the `clock` topic each
TOKENPLAN_STATUS_SCAN_INTERVAL_MS. The ledger agent consumes `clock` beside
`ledger-log` (co-partitioned), so a tick is processed by the partition's owner, in the
partition's context, and may update the account records (their last published
status) like any event. Ticks are not part of the ledger-log: replays never see them.
"""
from __future__ import annotations

from datetime import datetime, timezone

import orjson

from schemas.events import format_instant
from streams.agents.expiry import ExpiryIndex
from streams.agents.state_store import RecordCache
from streams.app import app, clock_topic, settings

expiry_index = ExpiryIndex()
#: Decoded account records of the partitions this worker owns (TOKENPLAN_RECORD_CACHE_MAX).
#: Only the owner writes an account, so it is exact until a rebalance; cleared on revoke.
record_cache = RecordCache(settings.record_cache_max)


@app.timer(settings.status_scan_interval_ms / 1000, on_leader=True)
async def send_clock_ticks() -> None:
    tick = orjson.dumps({"type": "clock.tick", "at": format_instant(datetime.now(timezone.utc))})
    for partition in range(settings.partitions):
        await clock_topic.send(key=None, value=tick, partition=partition)


@app.on_partitions_revoked.connect
async def forget_partition_caches(sender, revoked, **kwargs) -> None:
    """Partitions may move: drop cached records and rebuild the expiry index on the next tick."""
    record_cache.clear()
    expiry_index.clear()
