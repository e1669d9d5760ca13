"""Replay the ledger-log from Kafka with the same code the live ledger runs.

The ledger-log holds every input event in the order the ledger applied it, one
partition per group of accounts. Replaying it through `Processor` on in-memory
stores (one per partition, as the live worker has one table partition each) gives
exactly the state the live worker must have: that is what `tokenplan audit` checks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson

from schemas import topics
from schemas.events import format_instant
from streams.processing.processor import Processor
from streams.processing.records import AccountRecord
from streams.processing.state_store import DictBackend, PartitionState, RecordCache
from streams.config import Settings
from streams.audit.kafka_read import ReadProgress, read_topic
from streams.ledger import Catalog, Limits, Reason, account_view

#: Rejections of events that never reached the rules (the file replay lists no account for them).
UNREADABLE_REASONS = frozenset({
    Reason.INVALID_JSON.value, Reason.EVENT_TOO_LARGE.value, Reason.INVALID_EVENT.value, Reason.UNKNOWN_TYPE.value,
    Reason.INVALID_TIMESTAMP.value, Reason.TOKENS_OUT_OF_RANGE.value, Reason.ID_TOO_LONG.value,
    Reason.SECRET_IN_EVENT.value, "key_mismatch",
})

#: Decoded account records a replay keeps (every account of a large log fits).
REPLAY_RECORDS_CACHED_MAX = 10_000_000


@dataclass
class KafkaReplay:
    """The replayed partitions and where each ended (the end offsets when it started)."""

    stores: dict[int, DictBackend]
    end_offsets: dict[int, int]
    rejected: list[dict]
    limits: Limits | None = None

    def accounts(self) -> dict[str, AccountRecord]:
        records = {}
        for backend in self.stores.values():
            for key, value in backend.scan(b"a:"):
                records[key[2:].decode("utf-8")] = AccountRecord.from_bytes(value, self.limits)
        return records

    def result(self, as_of: datetime) -> dict:
        """The same JSON as the file replay (plus where the log ended).

        Like the file replay, an account whose events were all refused by the rules
        (not by decoding) is listed, with status none.
        """
        records = self.accounts()
        refused_only = {entry["account_id"] for entry in self.rejected
                        if entry.get("account_id") and entry["reason"] not in UNREADABLE_REASONS} - set(records)
        views = {account_id: account_view(records[account_id].state, as_of) for account_id in records}
        views.update({account_id: account_view(None, as_of) for account_id in refused_only})
        return {
            "as_of": format_instant(as_of),
            "accounts": {account_id: views[account_id] for account_id in sorted(views)},
            "rejected": self.rejected,
            "log_end_offsets": {str(partition): offset for partition, offset in sorted(self.end_offsets.items())},
        }


def _rejection_entry(value: bytes) -> dict:
    letter = orjson.loads(value)
    entry = {"event_id": letter["event_id"], "reason": letter["reason"]}
    if letter.get("account_id") is not None:
        entry["account_id"] = letter["account_id"]
    entry["detail"] = letter["detail"]
    entry["log"] = letter["log"]
    return entry


async def replay_ledger_log(settings: Settings, catalog: Catalog, limits: Limits, as_of: datetime,
                            on_progress: Callable[[ReadProgress], None] | None = None) -> KafkaReplay:
    """Read ledger-log from the beginning up to its end offsets at start, through Processor."""
    processor = Processor(catalog, limits)
    replay = KafkaReplay({}, {}, [], limits)
    cache = RecordCache(REPLAY_RECORDS_CACHED_MAX)

    def apply(message) -> None:
        backend = replay.stores.setdefault(message.partition, DictBackend())
        state = PartitionState(backend, message.partition, limits, cache, message.offset)
        emitted = processor.process_record(message.value, message.key, message.headers, message.offset, state, as_of)
        backend.write(state.finish())
        state.commit_to_cache()
        replay.rejected.extend(_rejection_entry(emit.value) for emit in emitted if emit.topic == topics.REJECTED)

    replay.end_offsets = await read_topic(settings.bootstrap_servers, settings.topic(topics.LEDGER_LOG), apply,
                                          on_progress)
    return replay
