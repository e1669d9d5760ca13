"""One ledger-log record in, state writes and out-topic records out: decode -> core -> encode.

No faust import: the ledger agent, the Kafka replayer and the tests call
`Processor.process_record` on a `PartitionState` (RocksDB in the worker, dicts
elsewhere). Every rule is the core's (`streams.ledger`); this module only adds what
belongs to the stream: the unit of work (one ledger-log record, v1 or a v2 batch),
redelivery and hole detection by the partition's watermark, the partition's
event-time high-water mark and id expiry, dead letters, and the status topic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from schemas.events import format_instant, parse_instant
from schemas.topics import BALANCE_CHANGED, QUOTA_EXHAUSTED, QUOTA_STATUS, REJECTED
from streams.processing.batch_record import BatchFormatError, InputEvent, decode_record, record_format
from streams.processing.records import AccountRecord, LogPosition, PartitionRecord, Source, dead_letter
from streams.processing.state_store import PartitionState, merge_days
from streams.ledger import (AccountState, Catalog, Fold, Limits, Rejection, StepResult, account_view,
                            allowed, decode_event, step, view_key)
from streams.ledger.decode import plain_usage_fields
from streams.ledger.dedupe import AppliedIds
from streams.ledger.fact_json import usage_charge_payload
from streams.ledger.json_bytes import json_bytes
from streams.ledger.lateness import advance, advance_to
from streams.ledger.memory import expired_before, record_applied
from streams.ledger.step import charge_plain_usage, fields_fingerprint, usage_too_late
from streams.ledger.units import to_micro
from streams.ledger.views import credit_step

#: A fact's type -> the out-topic it goes to. quota.restored shares the topic of
#: quota.exhausted, so one consumer sees a package's block and unblock in order.
FACT_TOPICS = {
    "balance.changed": BALANCE_CHANGED,
    "quota.exhausted": QUOTA_EXHAUSTED,
    "quota.restored": QUOTA_EXHAUSTED,
}


class LedgerHoleError(RuntimeError):
    """A ledger-log record arrived past the partition's watermark: records in between were
    never applied. Applying it would skip them for good (faust may commit over them), so
    the worker stops instead and restarts from its committed offsets."""


class Emit(NamedTuple):
    """One record to publish: out-topic short name, key, value (a NamedTuple: one per fact)."""

    topic: str
    key: bytes | None
    value: bytes


def status_view(record: AccountRecord | None, now: datetime) -> dict:
    """The lookup / quota-status body: the replay view at `now`, `allowed`, and `as_of`."""
    view = account_view(None if record is None else record.state, now)
    view["allowed"] = allowed(view)
    view["as_of"] = {
        "computed_at": format_instant(now),
        "event_time": None if record is None else record.event_time,
        "log": None if record is None else record.log.to_dict(),
        "source": None if record is None or record.source is None else record.source.to_dict(),
    }
    return view


def change_instants(state: AccountState, now: datetime) -> list[datetime]:
    """Future instants at which the account's view changes with no event (a start or an end)."""
    instants = set()
    for package in state.packages:
        for instant in (package.valid_from, package.valid_until):
            if instant > now:
                instants.add(instant)
    return sorted(instants)


def status_key(view: dict) -> tuple:
    """What a change of must be published on quota-status: allow/deny, status, package, credit step."""
    if view["credits_limit"] is None:
        return (view["status"], view["allowed"], None, None, None)
    step = credit_step(to_micro(Decimal(view["credits_limit"])), to_micro(Decimal(view["credits_used"])))
    return (view["status"], view["allowed"], view["tier"], view["valid_from"], step)


def record_status_key(record: AccountRecord | None, now: datetime) -> tuple:
    """`status_key(status_view(record, now))`, without building the view (the core's `view_key`)."""
    return view_key(None if record is None else record.state, now)


def _source(event: InputEvent) -> Source | None:
    return Source(event.topic, event.partition, event.offset) if event.topic else None


@dataclass
class _Unit:
    """What one record's events share: the partition record as it evolves, and what ran."""

    partition: PartitionRecord
    high_water: datetime | None
    skipped: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)


@dataclass
class Processor:
    """Applies ledger-log records to a partition's state; returns what to publish."""

    catalog: Catalog
    limits: Limits
    #: The partition record's global refresh texts last parsed, and their instants.
    _refreshes_parsed: tuple[tuple[str, ...], list[datetime]] = field(default=((), []), init=False,
                                                                      repr=False, compare=False)

    def _global_refreshes(self, texts: list[str]) -> list[datetime]:
        if not texts:
            return []
        key = tuple(texts)
        if key != self._refreshes_parsed[0]:
            self._refreshes_parsed = (key, [parse_instant(t) for t in texts])
        return self._refreshes_parsed[1]

    def process_record(self, value: bytes | None, key: bytes | None, headers, offset: int,
                       state: PartitionState, now: datetime) -> list[Emit]:
        """Apply one ledger-log record (v1 or v2) as one unit of work (see `process_records`)."""
        return self.process_records([(value, key, headers, offset)], state, now)

    def process_records(self, records: list[tuple[bytes | None, bytes | None, object, int]],
                        state: PartitionState, now: datetime) -> list[Emit]:
        """Apply consecutive ledger-log records of one partition as one unit of work.

        `records` are (value, key, headers, offset) in offset order; `state` was made with
        the first one's offset. Records below the partition's watermark are redeliveries
        (skipped: their writes are durable); a record past it, or a gap between two
        records, raises LedgerHoleError. Never raises on bad input (dead letters). The
        writes are left in `state` (`state.finish()`); the caller makes them durable.
        """
        partition = state.get_partition()
        fresh = [record for record in records if not (0 <= partition.next_offset and record[3] < partition.next_offset)]
        if not fresh:
            return []
        if state.offset is not None and fresh[0][3] > state.offset:
            # The unit began with redeliveries below the watermark (faust's resume-before-seek
            # race): the memory they wrote is durable, so only memory at or after the first
            # fresh record can be a torn try's. Counting from the unit's first record instead
            # ignored their ids, and a retry of one of their events was charged again.
            state.offset = fresh[0][3]
        expected = partition.next_offset if partition.next_offset >= 0 else fresh[0][3]
        for record in fresh:
            if record[3] != expected:
                raise LedgerHoleError(f"ledger-log partition {state.partition}: record {record[3]} arrived where "
                                      f"{expected} was expected")
            expected += 1
        high_water = None if partition.high_water is None else parse_instant(partition.high_water)
        unit = _Unit(partition, high_water)
        out: list[Emit] = []
        state.events_count = 0
        for value, key, headers, offset in fresh:
            state.record_offset = offset
            out.extend(self._apply_record(value, key, headers, offset, state, unit, now))
        self._close_unit(state, unit, fresh[-1][3])
        return out

    def _apply_record(self, value: bytes | None, key: bytes | None, headers, offset: int, state: PartitionState,
                      unit: "_Unit", now: datetime) -> list[Emit]:
        position = LogPosition(state.partition, offset)
        try:
            events = decode_record(value, key, headers)
        except BatchFormatError as error:
            return [self._dead(value or b"", key, "invalid_batch", str(error), None, position, None, None)]
        state.events_count += len(events)
        batched = record_format(headers) == 2
        out: list[Emit] = []
        for index, event in enumerate(events):
            log = LogPosition(state.partition, offset, index if batched else None)
            out.extend(self._apply(event, log, state, unit, now))
        return out

    def _close_unit(self, state: PartitionState, unit: _Unit, offset: int) -> None:
        """Move the watermark and the high-water mark, expire whole days of ids."""
        partition = unit.partition
        days = merge_days(partition.id_days, state.new_id_days())
        days = state.expire_days(days, expired_before(unit.high_water, self.limits.dedupe_window))
        state.put_partition(PartitionRecord(
            partition.global_refreshes, partition.global_refresh_ids, offset + 1,
            None if unit.high_water is None else format_instant(unit.high_water), days))

    def _apply(self, input_event: InputEvent, log: LogPosition, state: PartitionState, unit: _Unit,
               now: datetime) -> list[Emit]:
        raw, key = input_event.value, input_event.key
        usage = plain_usage_fields(raw, self.limits)
        if usage is not None:
            out = self._apply_plain_usage(usage, input_event, log, state, unit, now)
            if out is not None:
                return out
        source = _source(input_event)
        event = decode_event(raw, self.limits)
        if isinstance(event, Rejection):
            return [self._dead(raw, key, event.reason.value, event.detail, source, log, event.event_id,
                               event.account_id)]
        account_id = event.account_id
        if account_id is not None and key is not None and key != account_id.encode("utf-8"):
            return [self._dead(raw, key, "key_mismatch", "the message key must be the event's account_id (UTF-8)",
                               source, log, event.event_id, account_id)]
        if account_id is None:
            return self._apply_global_refresh(event, raw, key, source, log, state, unit, now)
        if self._already_applied(account_id, log, state, unit):
            return []
        result = step(None if (record := state.get(account_id)) is None else record.state, event, self.catalog,
                      self.limits, global_refreshes=self._global_refreshes(unit.partition.global_refreshes),
                      memory=state, high_water=unit.high_water)
        out = self._rejections([result], raw, key, source, log)
        if result.fingerprint is not None:
            record_applied(state, account_id, event, result)
            unit.high_water = advance(unit.high_water, event)
        out.extend(self._apply_result(result, state, log, source, format_instant(event.occurred_at), now))
        return out

    def _apply_plain_usage(self, usage: dict, input_event: InputEvent, log: LogPosition, state: PartitionState,
                           unit: _Unit, now: datetime) -> list[Emit] | None:
        """`_apply` of plain usage from its fields alone; None: nothing done, take the general path.

        Why: usage is nearly every event, and the general path builds the pydantic model,
        a StepResult, fact records and a fact list that plain usage does not need (the
        replay fold's `_fold_usage` is the same shortcut). Plain: keyed by its account, an
        account with a record this unit may still change, not too late, an id not
        remembered (a retry with the same content is a no-op here too), and a charge
        `charge_plain_usage` takes (no exhaustion starts or ends). The rules are the core's
        own functions; tests/processing/test_fast_path.py checks that both paths publish and
        write the same bytes.
        """
        account_id = usage["account_id"]
        key = input_event.key
        if key is not None and key != account_id.encode("utf-8"):
            return None
        if self._already_applied(account_id, log, state, unit):
            return []
        record = state.get(account_id)
        if record is None:
            return None
        instant, event_id = usage["occurred_at"], usage["event_id"]
        if usage_too_late(instant, unit.high_water, self.limits):
            return None
        fingerprint = fields_fingerprint(usage)
        seen = state.fingerprint_of(account_id, event_id)
        if seen is not None:
            return [] if seen == fingerprint else None
        charged = charge_plain_usage(record.state, usage, self.catalog)
        if charged is None:
            return None
        new_state, package, rating = charged
        state.remember(account_id, event_id, fingerprint, instant)
        state.append(account_id, ((package.opened_by, instant, rating[0]),))
        unit.high_water = advance_to(unit.high_water, instant)
        event_time = format_instant(instant)
        account_key = key if key is not None else account_id.encode("utf-8")
        out = [Emit(BALANCE_CHANGED, account_key, usage_charge_payload(usage, package, rating, event_time))]
        changed = AccountRecord(new_state, log, _source(input_event), event_time, record.status_key)
        status = self._status(account_id, changed, now)
        if status is not None:
            out.append(status)
        state.put(account_id, changed)
        return out

    @staticmethod
    def _already_applied(account_id: str, log: LogPosition, state: PartitionState, unit: _Unit) -> bool:
        """The account's committed record already holds this record (a torn write re-applied)."""
        if account_id in unit.seen:
            return account_id in unit.skipped
        unit.seen.add(account_id)
        stored = state.stored(account_id)
        if stored is not None and stored.log.partition == log.partition and stored.log.offset >= log.offset:
            unit.skipped.add(account_id)
            return True
        return False

    def _apply_global_refresh(self, event, raw: bytes, key: bytes | None, source: Source | None, log: LogPosition,
                              state: PartitionState, unit: _Unit, now: datetime) -> list[Emit]:
        """A quota.refreshed without account_id: to every account of the partition (the core's Fold)."""
        partition = unit.partition
        accounts = {account_id: record.state for account_id in state.account_ids()
                    if not self._already_applied(account_id, log, state, unit)
                    and (record := state.get(account_id)) is not None}
        ledger = Fold(self.catalog, self.limits, accounts=accounts,
                        global_refreshes=self._global_refreshes(partition.global_refreshes),
                        global_refresh_ids=AppliedIds.from_pairs(self.limits.global_refreshes_max,
                                                                 partition.global_refresh_ids),
                        memory=state)
        results = ledger.apply(event)
        out = [self._dead(raw, key, r.reason.value, r.detail, source, log, r.event_id, r.account_id)
               for r in ledger.rejected]
        for result in results:
            out.extend(self._apply_result(result, state, log, source, format_instant(event.occurred_at), now))
        unit.partition = PartitionRecord([format_instant(t) for t in ledger.global_refreshes],
                                         list(ledger.global_refresh_ids.pairs()), partition.next_offset,
                                         partition.high_water, partition.id_days)
        return out

    def _rejections(self, results: list[StepResult], raw: bytes, key: bytes | None, source: Source | None,
                    log: LogPosition) -> list[Emit]:
        return [self._dead(raw, key, r.rejection.reason.value, r.rejection.detail, source, log,
                           r.rejection.event_id, r.rejection.account_id) for r in results if r.rejection is not None]

    def _apply_result(self, result: StepResult, state: PartitionState, log: LogPosition, source: Source | None,
                      event_time: str, now: datetime) -> list[Emit]:
        if result.rejection is not None or result.duplicate or result.state is None:
            return []
        account_id = result.state.account_id
        key = account_id.encode("utf-8")
        out = [Emit(FACT_TOPICS[fact_type], key, payload) for fact_type, payload in result.fact_payloads()]
        previous = state.get(account_id)
        record = AccountRecord(result.state, log, source, event_time,
                               None if previous is None else previous.status_key)
        status = self._status(account_id, record, now)
        if status is not None:
            out.append(status)
        state.put(account_id, record)
        return out

    def _status(self, account_id: str, record: AccountRecord, now: datetime, force: bool = False) -> Emit | None:
        """A quota-status record when the allow/deny view changed (always when forced).

        Updates `record.status_key`; the caller stores the record.
        """
        key = record_status_key(record, now)
        if not force and key == record.status_key:
            return None
        view = status_view(record, now)
        record.status_key = key
        view["account_id"] = account_id
        return Emit(QUOTA_STATUS, account_id.encode("utf-8"), json_bytes(view))

    def tick(self, state: PartitionState, account_ids, now: datetime) -> list[Emit]:
        """Time passed: publish the status of accounts whose view changed without an event."""
        out: list[Emit] = []
        for account_id in account_ids:
            record = state.get(account_id)
            if record is None:
                continue
            changed = AccountRecord(record.state, record.log, record.source, record.event_time, record.status_key)
            status = self._status(account_id, changed, now)
            if status is not None:
                out.append(status)
                state.put(account_id, changed)
        return out

    @staticmethod
    def _dead(raw: bytes, key: bytes | None, reason: str, detail: str, source: Source | None,
              log: LogPosition, event_id: str | None, account_id: str | None) -> Emit:
        return Emit(REJECTED, key, dead_letter(raw, reason, detail, source, log, event_id, account_id))
