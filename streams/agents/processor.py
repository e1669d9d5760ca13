"""One ledger-log record in, state changes and out-topic records out: decode -> core -> encode.

No faust import: the ledger agent, the Kafka replayer and the tests call `process`
with a store that is a faust table (live) or a dict (tests, replay). Every rule is the
core's (`streams.ledger`); this module only adds what belongs to the stream:
redelivery detection by ledger-log offset, dead letters, and the status topic.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import orjson

from schemas.topics import BALANCE_CHANGED, QUOTA_EXHAUSTED, QUOTA_STATUS, REJECTED

from schemas.events import format_instant, parse_instant
from streams.agents.records import AccountRecord, LogPosition, PartitionRecord, Source, dead_letter
from streams.ledger import (AccountState, Catalog, Ledger, Limits, Rejection, StepResult, account_view,
                            allowed, decode_event, view_key)
from streams.ledger.dedupe import AppliedIds


#: A fact's type -> the out-topic it goes to. quota.restored shares the topic of
#: quota.exhausted, so one consumer sees a package's block and unblock in order.
FACT_TOPICS = {
    "balance.changed": BALANCE_CHANGED,
    "quota.exhausted": QUOTA_EXHAUSTED,
    "quota.restored": QUOTA_EXHAUSTED,
}


class PartitionStore(Protocol):
    """The state of one partition: account records plus the partition record."""

    def get(self, account_id: str) -> AccountRecord | None: ...
    def put(self, account_id: str, record: AccountRecord) -> None: ...
    def account_ids(self) -> Iterable[str]: ...
    def get_partition(self) -> PartitionRecord: ...
    def put_partition(self, record: PartitionRecord) -> None: ...


@dataclass(frozen=True)
class Emit:
    """One record to publish: out-topic short name, key, value."""

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
    """What a change of must be published on quota-status: allow/deny, status, package."""
    return (view["status"], view["allowed"], view["tier"], view["valid_from"])


def record_status_key(record: AccountRecord | None, now: datetime) -> tuple:
    """`status_key(status_view(record, now))`, without building the view (the core's `view_key`)."""
    return view_key(None if record is None else record.state, now)


class _Accounts(MutableMapping):
    """The core Ledger's view of the partition's accounts (AccountState by id)."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.changed: dict[str, AccountState] = {}

    def __getitem__(self, account_id: str) -> AccountState:
        if account_id in self.changed:
            return self.changed[account_id]
        record = self.store.get(account_id)
        if record is None:
            raise KeyError(account_id)
        return record.state

    def __setitem__(self, account_id: str, state: AccountState | None) -> None:
        if state is not None:
            self.changed[account_id] = state

    def __delitem__(self, account_id: str) -> None:
        raise TypeError("the ledger never deletes an account")

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.store.account_ids()))

    def __len__(self) -> int:
        return sum(1 for _ in self.store.account_ids())


@dataclass
class Processor:
    """Applies ledger-log records to a partition store; returns what to publish."""

    catalog: Catalog
    limits: Limits
    emitted: list[Emit] = field(default_factory=list)
    #: The partition record's global refresh texts last parsed, and their instants.
    _refreshes_parsed: tuple[tuple[str, ...], list[datetime]] = field(default=((), []), init=False,
                                                                      repr=False, compare=False)

    def _global_refreshes(self, texts: list[str]) -> list[datetime]:
        """The instants of a partition record's global refreshes (parsed once per change)."""
        if not texts:
            return []
        key = tuple(texts)
        if key != self._refreshes_parsed[0]:
            self._refreshes_parsed = (key, [parse_instant(t) for t in texts])
        return self._refreshes_parsed[1]  # Ledger copies (sorts) it

    def process(self, raw: bytes, key: bytes | None, log: LogPosition, source: Source | None,
                store: PartitionStore, now: datetime) -> list[Emit]:
        """Apply one record; never raises on bad input (it becomes a dead letter)."""
        out: list[Emit] = []
        event = decode_event(raw, self.limits)
        if isinstance(event, Rejection):
            out.append(self._dead(raw, key, event.reason.value, event.detail, source, log, event.event_id,
                                  event.account_id))
            return out
        account_id = event.account_id
        if account_id is not None and key is not None and key != account_id.encode("utf-8"):
            out.append(self._dead(raw, key, "key_mismatch",
                                  "the message key must be the event's account_id (UTF-8)", source, log,
                                  event.event_id, account_id))
            return out
        if account_id is not None:
            record = store.get(account_id)
            if record is not None and record.log.partition == log.partition and log.offset <= record.log.offset:
                # Redelivery of an event this account already applied (the worker
                # stopped before committing). Change nothing, but write the record
                # again: its changelog message may be what was lost, and the local
                # store must never be the only copy. Publish the status again too.
                out.append(self._status(account_id, record, now, force=True))
                store.put(account_id, record)
                return out
        partition = store.get_partition()
        if account_id is None and log.offset <= partition.log_offset:
            store.put_partition(partition)  # same reason: re-send its changelog
            return out
        accounts = _Accounts(store)
        if account_id is None:  # a global refresh: the ledger needs the applied ones
            ledger = Ledger(self.catalog, self.limits, accounts=accounts,
                            global_refreshes=self._global_refreshes(partition.global_refreshes),
                            global_refresh_ids=AppliedIds.from_pairs(self.limits.global_refreshes_max,
                                                                     partition.global_refresh_ids))
        else:  # one account's event reads only the global refresh instants (not their ids)
            ledger = Ledger(self.catalog, self.limits, accounts=accounts,
                            global_refreshes=self._global_refreshes(partition.global_refreshes))
        results = ledger.apply(event)
        for rejection in ledger.rejected:
            out.append(self._dead(raw, key, rejection.reason.value, rejection.detail, source, log, rejection.event_id,
                                  rejection.account_id))
        event_time = format_instant(event.occurred_at)
        for result in results:
            out.extend(self._apply_result(result, accounts, store, log, source, event_time, now))
        if account_id is None:
            store.put_partition(PartitionRecord(
                [format_instant(t) for t in ledger.global_refreshes],
                list(ledger.global_refresh_ids.pairs()), log.offset))
        return out

    def _apply_result(self, result: StepResult, accounts: _Accounts, store: PartitionStore, log: LogPosition,
                      source: Source | None, event_time: str, now: datetime) -> list[Emit]:
        if result.rejection is not None or result.duplicate or result.state is None:
            return []
        account_id = result.state.account_id
        key = account_id.encode("utf-8")
        out = [Emit(FACT_TOPICS[fact_type], key, payload) for fact_type, payload in result.fact_payloads()]
        previous = store.get(account_id)
        record = AccountRecord(result.state, log, source, event_time,
                               None if previous is None else previous.status_key)
        status = self._status(account_id, record, now)
        if status is not None:
            out.append(status)
        store.put(account_id, record)
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
        return Emit(QUOTA_STATUS, account_id.encode("utf-8"), orjson.dumps(view))

    def tick(self, store: PartitionStore, account_ids: Iterable[str], now: datetime) -> list[Emit]:
        """Time passed: publish the status of accounts whose view changed without an event."""
        out: list[Emit] = []
        for account_id in account_ids:
            record = store.get(account_id)
            if record is None:
                continue
            status = self._status(account_id, record, now)
            if status is not None:
                out.append(status)
                store.put(account_id, record)
        return out

    @staticmethod
    def _dead(raw: bytes, key: bytes | None, reason: str, detail: str, source: Source | None,
              log: LogPosition, event_id: str | None, account_id: str | None) -> Emit:
        return Emit(REJECTED, key, dead_letter(raw, reason, detail, source, log, event_id, account_id))


class DictStore:
    """A PartitionStore over plain dicts: tests and the Kafka replayer."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountRecord] = {}
        self.partition = PartitionRecord()

    def get(self, account_id: str) -> AccountRecord | None:
        return self.accounts.get(account_id)

    def put(self, account_id: str, record: AccountRecord) -> None:
        self.accounts[account_id] = record

    def account_ids(self) -> Iterable[str]:
        return self.accounts.keys()

    def get_partition(self) -> PartitionRecord:
        return self.partition

    def put_partition(self, record: PartitionRecord) -> None:
        self.partition = record
