"""The single pure transition `step(state, event) -> StepResult`.

`step` decides (accept or reject with a named reason) and applies in one pure
function: it never changes its inputs, reads no clock and does no I/O (the event
memory is read through a protocol; what an applied event adds comes back in the
result). The applier, the replays and the tests all call it.

Design of time (see docs/rules.md):
* usage belongs to the package period containing its occurred_at, whenever it
  arrives, within `lateness_max` of its partition's event-time high-water mark;
* refresh instants are kept per account (`refreshes`), including global ones the
  caller broadcast; `global_refreshes` passed to `step` are merged into every
  package the account opens, so a package opened after a global refresh was seen
  still applies it when its validity contains T.
"""
from __future__ import annotations

import bisect
from dataclasses import replace
from datetime import datetime
from typing import Iterable

import orjson

from schemas.events import (
    Event,
    PlanPurchased,
    PlanRenewed,
    PlanUpgraded,
    QuotaRefreshed,
    Usage,
    format_instant,
)
from streams.ledger.catalog import Catalog
from streams.ledger.decisions import NO_MEMORY, decide_purchase, decide_upgrade, new_package
from streams.ledger.dedupe import fingerprint_bytes
from streams.ledger.errors import LedgerInvariantError
from streams.ledger.facts import Fact, FactRecords
from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.ledger.memory import EventMemory
from streams.ledger.packages import Entries, Package
from streams.ledger.prices import PriceQuote
from streams.ledger.rating import Rating, rate
from streams.ledger.rejections import Reason, Rejection, reject
from streams.ledger.state import AccountState

__all__ = ["StepResult", "charge_plain_usage", "event_fingerprint", "fields_fingerprint", "step", "usage_too_late"]


class StepResult:
    """What one event did: the new state, the facts to emit, or why it was refused.

    state: the new state (the input state itself when rejected or duplicate).
    facts: output facts (`schemas.outputs` models) in emission order. They
        are built on first access from compact records, so a replay that never
        reads them does not pay for pydantic models and Decimals.
    rejection: the named reason when refused, else None.
    duplicate: the event_id was already applied with the same content (no-op).
    fingerprint: set when the event was applied: the caller remembers
        (event_id, fingerprint) in its event memory, in the same unit of work.
    appended: usage entries (package_id, occurred_at, micro) the caller appends
        to its event memory; forgotten: package ids pruned (their entries may go).
    """

    __slots__ = ("state", "rejection", "duplicate", "fingerprint", "_records", "_facts")

    def __init__(self, state: AccountState | None, records: "FactRecords | None" = None,
                 rejection: Rejection | None = None, duplicate: bool = False,
                 fingerprint: str | None = None) -> None:
        self.state = state
        self.rejection = rejection
        self.duplicate = duplicate
        self.fingerprint = fingerprint
        self._records = records
        self._facts: list[Fact] | None = None

    @property
    def applied(self) -> bool:
        """The event changed the account (neither refused nor a duplicate)."""
        return self.fingerprint is not None

    @property
    def appended(self) -> list[tuple[str, datetime, int]]:
        return [] if self._records is None else self._records.appended

    @property
    def forgotten(self) -> list[str]:
        return [] if self._records is None else self._records.forgotten

    @property
    def facts(self) -> list[Fact]:
        if self._facts is None:
            self._facts = [] if self._records is None else self._records.materialize()
        return self._facts

    def fact_payloads(self) -> list[tuple[str, bytes]]:
        """(type, JSON) of each fact: exactly `(fact.type, fact.model_dump_json().encode())`
        of `facts`, serialized from the compact records without building the models."""
        return [] if self._records is None else self._records.payloads()

    @property
    def facts_count(self) -> int:
        """Number of facts, without materializing them."""
        return 0 if self._records is None else len(self._records.records)

    def __repr__(self) -> str:
        return (f"StepResult(rejection={self.rejection!r}, duplicate={self.duplicate}, "
                f"facts={self.facts_count})")


def event_fingerprint(event: Event) -> str:
    """Fingerprint of an event's declared content (extra fields are ignored, as the rules do).

    Declared fields live in the model's __dict__ (extras in
    __pydantic_extra__); orjson renders them canonically (sorted keys, UTC
    instants in RFC 3339), and blake2b shortens that to 64 bits.
    """
    return fields_fingerprint(event.__dict__)


def fields_fingerprint(fields: dict) -> str:
    """`event_fingerprint` of the event whose declared fields (its `__dict__`) are `fields`."""
    return fingerprint_bytes(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))


def _settle_exhaustion(package: Package, facts: FactRecords) -> Package:
    """Emit quota.exhausted once when crossing into exhaustion, quota.restored when lifted."""
    if package.is_exhausted and not package.exhausted:
        facts.exhausted(package)
        return replace(package, exhausted=True)
    if package.exhausted and not package.is_exhausted:
        facts.restored(package)
        return replace(package, exhausted=False)
    return package


def step(state: AccountState | None, event: Event, catalog: Catalog,
         limits: Limits = DEFAULT_LIMITS, *,
         global_refreshes: Iterable[datetime] = (), memory: EventMemory = NO_MEMORY,
         high_water: datetime | None = None) -> StepResult:
    """Apply one decoded event to one account. Pure and deterministic; never raises on bad events.

    `state` is None for an account never seen. A global `quota.refreshed`
    (no account_id) is applied to `state`'s account; with `state` None it is
    a no-op (the caller keeps global refreshes and passes them as
    `global_refreshes` so packages opened later apply them).

    `memory` is read, never written: an applied event's id and usage entries come
    back in the result for the caller to store. `high_water` is the event-time
    high-water mark of the event's partition (`lateness.advance`), None when no
    usage was applied there yet.
    """
    account_id = event.account_id if event.account_id is not None else (
        state.account_id if state is not None else None)
    if account_id is None:
        return StepResult(state)
    if state is None:
        current = AccountState.empty(account_id, limits)
    elif state.account_id != account_id:
        raise LedgerInvariantError("event routed to another account")
    else:
        current = state
    is_usage = type(event) is Usage
    if is_usage and usage_too_late(event.occurred_at, high_water, limits):
        return StepResult(state, rejection=reject(
            Reason.USAGE_TOO_LATE,
            f"occurred_at {format_instant(event.occurred_at)} is more than lateness_max "
            f"({limits.lateness_max.days} days) before {format_instant(high_water)}, the latest usage "
            f"applied on this account's partition", event_id=event.event_id, account_id=account_id))
    fingerprint = event_fingerprint(event)
    event_id = event.event_id
    seen = memory.fingerprint_of(account_id, event_id)
    if seen is not None:
        if seen == fingerprint:
            return StepResult(state, duplicate=True)
        return StepResult(state, rejection=reject(
            Reason.DUPLICATE_CONFLICT, f"event_id {event_id!r} was applied with other content",
            event_id=event_id, account_id=account_id))
    facts = FactRecords(account_id, event, memory)
    if is_usage:
        packages = _usage_packages(current, event, catalog, limits, facts)
        if type(packages) is Rejection:
            return StepResult(state, rejection=packages)
        return StepResult(current.with_packages(packages), facts, fingerprint=fingerprint)
    outcome = _HANDLERS[type(event)](current, event, catalog, limits,
                                     tuple(global_refreshes), facts)
    if isinstance(outcome, Rejection):
        return StepResult(state, rejection=outcome)
    return StepResult(outcome, facts, fingerprint=fingerprint)


def usage_too_late(instant: datetime, high_water: datetime | None, limits: Limits) -> bool:
    """The lateness rule: usage more than `lateness_max` before its partition's high-water mark."""
    return high_water is not None and instant < high_water - limits.lateness_max


def _refuse(reason: Reason, event: Event, account_id: str, detail: str = "") -> Rejection:
    return reject(reason, detail, event_id=event.event_id, account_id=account_id)


def _replace_package(packages: tuple[Package, ...], index: int, package: Package
                     ) -> tuple[Package, ...]:
    if index == len(packages) - 1:  # the usual one: the newest package
        return packages[:index] + (package,)
    return packages[:index] + (package,) + packages[index + 1:]


def _usage_charge(state: AccountState, usage: dict, catalog: Catalog
                  ) -> tuple[int, Package, Rating] | Rejection:
    """Where usage is charged: (index of its package, that package after the charge, its `Rating`).

    The rating (charge, coefficient, saving) is computed here once; the fact carries it.

    `usage` is the event's declared fields (`Usage.__dict__`): read from the dict, not
    through the model's attributes, which pydantic serves more slowly (the hot path).
    """
    instant = usage["occurred_at"]
    version = catalog.version_at(instant)
    if version is None:
        return _refuse_usage(Reason.NO_CATALOG_VERSION, usage)
    rating = rate(version, usage["model"], usage["input_cache_hit_tokens"],
                  usage["input_cache_miss_tokens"], usage["output_tokens"], instant)
    if rating is None:
        return _refuse_usage(Reason.UNKNOWN_MODEL, usage,
                             f"model {usage['model']!r} is not in catalog {version.name}")
    packages = state.packages
    # package_index_at, inlined: the package containing `instant`, newest first.
    index = len(packages) - 1
    while index >= 0:
        package = packages[index]
        if package.valid_from <= instant:
            if instant >= package.valid_until:
                index = -1
            break
        index -= 1
    if index < 0:
        if state.pruned_until is not None and instant < state.pruned_until:
            return _refuse_usage(Reason.PERIOD_PRUNED, usage)
        return _refuse_usage(Reason.USAGE_OUTSIDE_PACKAGE, usage,
                             f"no package of the account contains {format_instant(instant)}")
    return index, package.with_usage(instant, rating[0], state.refreshes), rating


def _refuse_usage(reason: Reason, usage: dict, detail: str = "") -> Rejection:
    return reject(reason, detail, event_id=usage["event_id"], account_id=usage["account_id"])


def _usage_packages(state: AccountState, event: Usage, catalog: Catalog, limits: Limits,
                    facts: FactRecords) -> tuple[Package, ...] | Rejection:
    """The account's packages after charging `event` (the hot path of the whole core)."""
    charge = _usage_charge(state, event.__dict__, catalog)
    if type(charge) is Rejection:
        return charge
    index, package, rating = charge
    micro = rating[0]
    facts.appended.append((package.opened_by, event.occurred_at, micro))
    used, limit = package.used_micro, package.credits_limit_micro
    if used >= limit:
        if not package.exhausted:
            facts.exhausted(package)
            package = replace(package, exhausted=True)
    elif package.exhausted:
        facts.restored(package)
        package = replace(package, exhausted=False)
    facts.records.append(("bc", package, micro, None, rating))
    return _replace_package(state.packages, index, package)


def charge_plain_usage(state: AccountState, usage: dict, catalog: Catalog
                       ) -> tuple[AccountState, Package, Rating] | None:
    """`step`'s charge of usage when it is plain, from the event's fields alone (the fast paths
    of the replay fold and of the streaming processor).

    `usage`: the event's declared fields (`Usage.__dict__`, or `decode.plain_usage_fields`).
    Plain: accepted, and no exhaustion starts or ends, so its one fact is the balance
    change (`fact_json.usage_charge_payload`). Returns (new state, the charged package,
    its `Rating`: micro-credits first), exactly what `step` would; None when not plain:
    the caller then asks `step`. The lateness and duplicate checks are the caller's
    (`usage_too_late`, its event memory).
    """
    charge = _usage_charge(state, usage, catalog)
    if type(charge) is Rejection:
        return None
    index, package, rating = charge
    if package.exhausted or package.used_micro >= package.credits_limit_micro:
        return None
    return state.with_packages(_replace_package(state.packages, index, package)), package, rating


def _merge_refreshes(state: AccountState, package: Package,
                     global_refreshes: tuple[datetime, ...]) -> tuple[datetime, ...]:
    """The account's refreshes plus the global ones inside the new package's validity."""
    inside = [t for t in global_refreshes if package.contains(t) and t not in state.refreshes]
    return tuple(sorted(state.refreshes + tuple(inside))) if inside else state.refreshes


def _open(state: AccountState, package: Package, packages: tuple[Package, ...],
          global_refreshes: tuple[datetime, ...], limits: Limits, facts: FactRecords,
          price: PriceQuote | None) -> AccountState:
    """Add an opened package: merge refreshes, lift a block, emit, prune old periods."""
    refreshes = _merge_refreshes(state, package, global_refreshes)
    package = package.with_refreshes(refreshes, None)  # a new package holds no usage yet
    previous = packages[-1] if packages else None
    package = _settle_exhaustion(package, facts)
    if previous is not None and previous.exhausted and not package.is_exhausted:
        facts.restored(package)
    facts.balance(package, 0, price)
    opened = replace(state, packages=packages + (package,), refreshes=refreshes, had_package=True,
                     first_valid_from=state.first_valid_from or package.valid_from)
    return _prune(opened, limits, facts)


def _prune(state: AccountState, limits: Limits, facts: FactRecords) -> AccountState:
    """Keep the newest `packages_max` periods and the refreshes that can still matter."""
    packages, pruned_until = state.packages, state.pruned_until
    if len(packages) > limits.packages_max:
        dropped = packages[: len(packages) - limits.packages_max]
        facts.forgotten.extend(package.opened_by for package in dropped)
        packages = packages[len(dropped):]
        pruned_until = dropped[-1].valid_until
    refreshes = state.refreshes
    if packages:
        refreshes = refreshes[bisect.bisect_left(refreshes, packages[0].valid_from):]
    return replace(state, packages=packages, refreshes=refreshes, pruned_until=pruned_until)


def _apply_purchase(state: AccountState, event: PlanPurchased, catalog: Catalog, limits: Limits,
                    global_refreshes: tuple[datetime, ...], facts: FactRecords
                    ) -> AccountState | Rejection:
    decision = decide_purchase(state, event.tier, event.period, event.currency, event.auto_renew,
                               event.occurred_at, catalog, event.event_id)
    if isinstance(decision, Reason):
        return _refuse(decision, event, state.account_id)
    discount = decision.price.discount
    state = replace(
        state,
        first_purchase_discount_used=state.first_purchase_discount_used
        or discount == "first_purchase",
        auto_renew_activated=state.auto_renew_activated or event.auto_renew,
        auto_renew_discount_used=state.auto_renew_discount_used
        or discount in ("auto_renew_new", "auto_renew_existing"))
    return _open(state, decision.package, state.packages, global_refreshes, limits, facts,
                 decision.price)


def _apply_upgrade(state: AccountState, event: PlanUpgraded, catalog: Catalog, limits: Limits,
                   global_refreshes: tuple[datetime, ...], facts: FactRecords
                   ) -> AccountState | Rejection:
    decision = decide_upgrade(state, event.tier, event.period, event.currency, False,
                              event.occurred_at, catalog, event.event_id, _StepMemory(facts))
    if isinstance(decision, Reason):
        return _refuse(decision, event, state.account_id)
    moved = decision.moved
    packages = _replace_package(state.packages, decision.old_index, decision.closed)
    opened = _open(state, decision.package, packages, global_refreshes, limits, facts,
                   decision.price)
    if not moved:
        return opened
    return _record_moved(opened, moved, limits, facts)


def _record_moved(state: AccountState, moved: list[tuple[datetime, int]], limits: Limits,
                  facts: FactRecords) -> AccountState:
    """Usage that occurred at/after the upgrade instant belongs to the new package."""
    package = state.packages[-1].with_entries(moved, state.refreshes)
    facts.appended.extend((package.opened_by, instant, micro) for instant, micro in moved)
    package = _settle_exhaustion(package, facts)
    facts.balance(package, 0)
    return replace(state, packages=state.packages[:-1] + (package,))


def _apply_renewal(state: AccountState, event: PlanRenewed, catalog: Catalog, limits: Limits,
                   global_refreshes: tuple[datetime, ...], facts: FactRecords
                   ) -> AccountState | Rejection:
    """Open the next period of the latest package, starting exactly where it ended."""
    if not state.packages:
        return _refuse(Reason.NO_PACKAGE_TO_RENEW, event, state.account_id)
    latest = state.packages[-1]
    at = event.occurred_at
    if at < latest.valid_from:
        return _refuse(Reason.PLAN_EVENT_OUT_OF_ORDER, event, state.account_id)
    version = catalog.version_at(at)
    if version is None:
        return _refuse(Reason.NO_CATALOG_VERSION, event, state.account_id)
    package = new_package(version, latest.tier, latest.period, latest.currency,
                           latest.valid_until, latest.anchor, latest.index + 1, event.event_id,
                           state.refreshes)
    if isinstance(package, Reason):
        return _refuse(package, event, state.account_id)
    if at >= package.valid_until:
        return _refuse(Reason.RENEWAL_LAPSED, event, state.account_id)
    list_price = version.list_price(latest.tier, latest.period, latest.currency)
    price = None if list_price is None else PriceQuote(list_price, latest.currency, None)
    return _open(state, package, state.packages, global_refreshes, limits, facts, price)


def _apply_refresh(state: AccountState, event: QuotaRefreshed, catalog: Catalog, limits: Limits,
                   global_refreshes: tuple[datetime, ...], facts: FactRecords
                   ) -> AccountState | Rejection:
    """Consumption before T stops counting in the package valid at T (validity unchanged)."""
    instant = event.occurred_at
    if instant in state.refreshes:
        return state
    index = state.package_index_at(instant)
    refreshes = tuple(sorted(state.refreshes + (instant,)))
    if state.packages:
        refreshes = refreshes[bisect.bisect_left(refreshes, state.packages[0].valid_from):]
    if len(refreshes) > limits.refreshes_max:
        return _refuse(Reason.TOO_MANY_REFRESHES, event, state.account_id)
    if index is None:
        return replace(state, refreshes=refreshes)
    package = state.packages[index]
    entries = facts.entries(package) if package.needs_entries_to_cut(instant, state.refreshes) else None
    package = package.with_refreshes(refreshes, entries)
    package = _settle_exhaustion(package, facts)
    facts.balance(package, 0)
    return replace(state, refreshes=refreshes,
                   packages=_replace_package(state.packages, index, package))


class _StepMemory:
    """The memory as one step sees it: the caller's, plus what this step appended."""

    __slots__ = ("facts",)

    def __init__(self, facts: FactRecords) -> None:
        self.facts = facts

    def fingerprint_of(self, account_id: str, event_id: str) -> str | None:
        return self.facts.memory.fingerprint_of(account_id, event_id)

    def usage_entries(self, account_id: str, package_id: str) -> Entries:
        entries = self.facts.memory.usage_entries(account_id, package_id)
        entries.extend((instant, micro) for pid, instant, micro in self.facts.appended if pid == package_id)
        return entries


_HANDLERS = {
    PlanPurchased: _apply_purchase,
    PlanUpgraded: _apply_upgrade,
    PlanRenewed: _apply_renewal,
    QuotaRefreshed: _apply_refresh,
}
