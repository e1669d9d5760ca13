"""The replay fold: events in file order over many accounts.

`Fold` owns what spans accounts: the account states, the global refresh
instants (a `quota.refreshed` without account_id is applied to every known
account now, and passed as `global_refreshes` to every later step so
packages opened afterwards apply it too: order-independent), the list of
rejections, and per partition (`partitioning.account_partition`, as the live
worker groups accounts) the event memory and the event-time high-water mark
the lateness rule compares usage with. It does no I/O; the replay command
feeds it lines.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, MutableMapping
from datetime import datetime

from schemas.events import QuotaRefreshed, format_instant
from streams.ledger.state import AccountState
from streams.ledger.step import (StepResult, charge_plain_usage, event_fingerprint,
                                    fields_fingerprint, step, usage_too_late)
from streams.ledger.catalog import Catalog
from streams.ledger.decode import decode_event, plain_usage_fields
from streams.ledger.dedupe import AppliedIds
from streams.ledger.lateness import advance, advance_to
from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.ledger.memory import InMemoryEventMemory, record_applied
from streams.ledger.partitioning import account_partition
from streams.ledger.rejections import Reason, Rejection, reject
from streams.ledger.views import account_view

__all__ = ["Fold"]


class Fold:
    """In-memory fold of `step` over a log of events (replay, quote, tests, benchmark)."""

    def __init__(self, catalog: Catalog, limits: Limits = DEFAULT_LIMITS, *,
                 accounts: MutableMapping[str, AccountState | None] | None = None,
                 global_refreshes: Iterable[datetime] = (),
                 global_refresh_ids: AppliedIds | None = None, partitions: int = 8,
                 memory: InMemoryEventMemory | None = None) -> None:
        """`accounts` is the state store (a dict by default). `global_refreshes` and
        `global_refresh_ids` resume a fold from stored state. `partitions`: the
        ledger-log's partition count (TOKENPLAN_PARTITIONS), which groups accounts
        for the lateness rule exactly as the live worker does. `memory`: one event
        memory for every partition (the streaming worker's store of one partition)."""
        self.catalog = catalog
        self.limits = limits
        self.partitions = partitions
        self.memories: dict[int, InMemoryEventMemory] = {}
        #: account -> (partition, event memory), for the accounts `add` met (see `_home`).
        self._homes: dict[str, tuple[int, InMemoryEventMemory]] = {}
        self._shared_memory = memory
        self.high_waters: dict[int, datetime] = {}
        self.accounts = {} if accounts is None else accounts
        self.global_refreshes: list[datetime] = sorted(global_refreshes)
        self.global_refresh_ids = (AppliedIds(limits.global_refreshes_max)
                                   if global_refresh_ids is None else global_refresh_ids)
        self.rejected: list[Rejection] = []
        self.facts_count = 0
        self.duplicates_count = 0
        self.applied_count = 0

    def feed(self, raw: bytes | str | dict) -> list[StepResult] | Rejection:
        """Decode and apply one raw event; rejections are recorded, never raised.

        Returns the decode Rejection, or the step results (one per account
        touched: a global refresh touches every known account).
        """
        event = decode_event(raw, self.limits)
        if isinstance(event, Rejection):
            self.rejected.append(event)
            return event
        return self.apply(event)

    def add(self, raw: bytes | str | dict) -> None:
        """`feed` for a caller that reads no step results (the replay loop): the same effects.

        Why: plain usage is nearly every line of a log, and `_fold_usage` applies it from
        its fields alone, without the pydantic model, the StepResult and the fact records
        that only a caller of `feed` reads; every other line takes `feed`'s path.
        """
        fields = plain_usage_fields(raw, self.limits)
        if fields is not None and self._fold_usage(fields):
            return
        event = decode_event(raw, self.limits)
        if isinstance(event, Rejection):
            self.rejected.append(event)
        else:
            self.apply(event)

    def _fold_usage(self, usage: dict) -> bool:
        """Apply usage as `apply` (and so `step`) would, when plain; False: nothing done, call `apply`.

        `usage`: the declared fields of a decoded Usage. Plain: a known account, not too
        late, an id not remembered, and a charge `charge_plain_usage` takes (no exhaustion
        starts or ends). The rules are `step`'s own functions; tests/ledger/test_fast_paths.py
        checks that both paths agree.
        """
        account_id = usage["account_id"]
        state = self.accounts.get(account_id)
        if state is None:
            return False
        home = self._homes.get(account_id)  # `_home`, its common case inlined
        partition, memory = home if home is not None else self._home(account_id)
        high_water = self.high_waters.get(partition)
        instant, event_id = usage["occurred_at"], usage["event_id"]
        if usage_too_late(instant, high_water, self.limits):
            return False
        if memory.fingerprint_of(account_id, event_id) is not None:
            return False
        charged = charge_plain_usage(state, usage, self.catalog)
        if charged is None:
            return False
        new_state, package, rating = charged
        micro = rating[0]
        self.accounts[account_id] = new_state
        memory.remember(account_id, event_id, fields_fingerprint(usage), instant)
        memory.append_entry(account_id, package.opened_by, instant, micro)
        self._move_high_water(partition, memory, high_water, advance_to(high_water, instant))
        self.applied_count += 1
        self.facts_count += 1  # its balance.changed
        return True

    def _home(self, account_id: str) -> tuple[int, InMemoryEventMemory]:
        """(partition, event memory) of an account, memoized: every usage event needs both."""
        home = self._homes.get(account_id)
        if home is None:
            partition = account_partition(account_id, self.partitions)
            home = self._homes[account_id] = (partition, self._memory(partition))
        return home

    def _move_high_water(self, partition: int, memory: InMemoryEventMemory, high_water: datetime | None,
                         moved: datetime | None) -> None:
        """After an applied event: set the partition's new mark, expire the ids it leaves behind."""
        if moved is not high_water:
            self.high_waters[partition] = moved
            memory.expire_behind(moved, self.limits.dedupe_window)

    def apply(self, event) -> list[StepResult]:
        """Apply one decoded event; returns its step results (facts are read from them)."""
        if isinstance(event, QuotaRefreshed) and event.account_id is None:
            return self._apply_global_refresh(event)
        account_id = event.account_id
        partition = account_partition(account_id, self.partitions)
        memory = self._memory(partition)
        high_water = self.high_waters.get(partition)
        result = step(self.accounts.get(account_id), event, self.catalog, self.limits,
                      global_refreshes=self.global_refreshes, memory=memory, high_water=high_water)
        if result.state is not None or account_id not in self.accounts:
            self.accounts[account_id] = result.state
        if result.fingerprint is not None:
            record_applied(memory, account_id, event, result)
            self._move_high_water(partition, memory, high_water, advance(high_water, event))
        return [self._record(result)]

    def memory_of(self, account_id: str) -> InMemoryEventMemory:
        """The event memory holding `account_id`'s ids and usage entries (quotes read it)."""
        return self._memory(account_partition(account_id, self.partitions))

    def _memory(self, partition: int) -> InMemoryEventMemory:
        if self._shared_memory is not None:
            return self._shared_memory
        memory = self.memories.get(partition)
        if memory is None:
            memory = self.memories[partition] = InMemoryEventMemory()
        return memory

    def _record(self, result: StepResult) -> StepResult:
        if result.rejection is not None:
            self.rejected.append(result.rejection)
        elif result.duplicate:
            self.duplicates_count += 1
        else:
            self.applied_count += 1
        self.facts_count += result.facts_count
        return result

    def _apply_global_refresh(self, event: QuotaRefreshed) -> list[StepResult]:
        """Remember T for accounts opened later, then broadcast to every known account."""
        fingerprint = event_fingerprint(event)
        seen = self.global_refresh_ids.get(event.event_id)
        if seen is not None:
            if seen != fingerprint:
                self.rejected.append(reject(Reason.DUPLICATE_CONFLICT, event_id=event.event_id))
            else:
                self.duplicates_count += 1
            return []
        if len(self.global_refreshes) >= self.limits.global_refreshes_max:
            self.rejected.append(reject(Reason.TOO_MANY_REFRESHES, event_id=event.event_id))
            return []
        self.global_refresh_ids = self.global_refresh_ids.add(event.event_id, fingerprint)
        if event.occurred_at not in self.global_refreshes:
            bisect.insort(self.global_refreshes, event.occurred_at)
        results: list[StepResult] = []
        for account_id, state in list(self.accounts.items()):
            if state is None:
                continue
            memory = self._memory(account_partition(account_id, self.partitions))
            result = step(state, event, self.catalog, self.limits, memory=memory)
            self.accounts[account_id] = result.state
            if result.fingerprint is not None:
                record_applied(memory, account_id, event, result)
            results.append(self._record(result))
        return results

    def result(self, as_of: datetime) -> dict:
        """The replay JSON structure of issue 3 (accounts sorted by id)."""
        return {
            "as_of": format_instant(as_of),
            "accounts": {account_id: account_view(self.accounts[account_id], as_of)
                         for account_id in sorted(self.accounts)},
            "rejected": [_rejected_entry(r) for r in self.rejected],
        }


def _rejected_entry(rejection: Rejection) -> dict:
    entry = {"event_id": rejection.event_id, "reason": rejection.reason.value}
    if rejection.account_id is not None:
        entry["account_id"] = rejection.account_id
    entry["detail"] = rejection.detail
    return entry
