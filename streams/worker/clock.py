"""Clock ticks for expiry: status changes that come from time passing, not from events.

The leader worker sends a tick to every partition of the `clock` topic each
TOKENPLAN_STATUS_SCAN_INTERVAL_MS. The applier consumes `clock` beside `ledger-log`
(co-partitioned), so a tick is processed by the partition's owner, in the partition's
context, and may update the account records (their last published status) like any
event. Ticks are not part of the ledger-log: replays never see them.
"""
from __future__ import annotations

from datetime import datetime, timezone

import orjson

from schemas.events import format_instant
from streams.worker.app import Wiring
from streams.worker.runtime import WorkerRuntime


def tick_value(now: datetime) -> bytes:
    return orjson.dumps({"type": "clock.tick", "at": format_instant(now)})


def register(wiring: Wiring, runtime: WorkerRuntime) -> None:
    """The leader's tick timer, and dropping partition runtimes on revoke."""
    settings = wiring.settings

    async def send_clock_ticks() -> None:
        tick = tick_value(datetime.now(timezone.utc))
        for partition in range(settings.partitions):
            await wiring.clock_topic.send(key=None, value=tick, partition=partition)

    async def forget_revoked_partitions(sender, revoked, **kwargs) -> None:
        """Revoked partitions may move: their cached records and expiry index go with them."""
        runtime.revoke(tp.partition for tp in revoked)

    wiring.app.timer(settings.status_scan_interval_ms / 1000, on_leader=True, name="send_clock_ticks")(
        send_clock_ticks)
    wiring.app.on_partitions_revoked.connect(forget_revoked_partitions, weak=False)
