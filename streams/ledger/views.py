"""The account view as of an instant: what `tokenplan replay` prints and gateways read.

status: active (a package is valid at as_of and not exhausted), exhausted
(valid but used >= pool), expired (the account had a package by as_of but
none is valid then), none (no package had started by as_of).
credits_used counts the refreshes in effect at as_of (usage before the
latest refresh <= as_of does not count) and every applied usage event of
that period after it; credits_remaining is never negative.
"""
from __future__ import annotations

from datetime import datetime

from streams.ledger.state import AccountState
from streams.ledger.json_cache import instant_text
from streams.ledger.packages import Package
from streams.ledger.units import credits_text

__all__ = ["STATUS_CREDIT_STEPS", "STATUS_EXACT_BELOW_PERCENT", "account_view", "allowed", "credit_step",
           "empty_view", "view_key"]

#: A status record is published each time the used credits cross one of this many equal
#: steps of the pool, so a gateway's cached remaining credits are never staler than one step...
STATUS_CREDIT_STEPS = 100
#: ...and on every change once the remaining credits are below this share of the pool,
#: where a gateway's in-flight count needs them exact (the overspend bound near exhaustion).
STATUS_EXACT_BELOW_PERCENT = 5

_FIELDS = ("tier", "period", "credits_limit", "credits_used", "credits_remaining",
           "valid_from", "valid_until")


def empty_view(status: str = "none") -> dict:
    """A view without a package (status none or expired)."""
    return {"status": status, **{name: None for name in _FIELDS}}


def _view_package(state: AccountState | None, as_of: datetime) -> tuple[str, Package | None, int]:
    """(status, package valid at as_of or None, its counted usage): the rules of every view."""
    if state is None:
        return "none", None, 0
    package = state.package_at(as_of)
    if package is None:
        started = state.first_valid_from is not None and state.first_valid_from <= as_of
        return ("expired" if started else "none"), None, 0
    used = package.used_as_of(state.refreshes, as_of)
    return ("exhausted" if used >= package.credits_limit_micro else "active"), package, used


def account_view(state: AccountState | None, as_of: datetime) -> dict:
    """The replay account view of `state` at `as_of` (credits as strings, times as 'Z' RFC 3339)."""
    status, package, used = _view_package(state, as_of)
    if package is None:
        return empty_view(status)
    limit = package.credits_limit_micro
    return {
        "status": status,
        "tier": package.tier,
        "period": package.period,
        "credits_limit": credits_text(limit),
        "credits_used": credits_text(used),
        "credits_remaining": credits_text(max(limit - used, 0)),
        # A package's instants repeat on every view of it (every lookup): memoized text.
        "valid_from": instant_text(package.valid_from),
        "valid_until": instant_text(package.valid_until),
    }


def credit_step(limit_micro: int, used_micro: int) -> int:
    """Which step of the pool the used credits are in; near the end, the exact remaining credits.

    Far from exhaustion a gateway needs the remaining credits only roughly (1 % of the
    pool); near it, exactly, to refuse what its requests in flight would overspend.
    """
    remaining = max(limit_micro - used_micro, 0)
    if remaining * 100 < limit_micro * STATUS_EXACT_BELOW_PERCENT:
        return -1 - remaining  # negative: never equal to a step number
    return used_micro * STATUS_CREDIT_STEPS // limit_micro if limit_micro else 0


def view_key(state: AccountState | None, as_of: datetime) -> tuple:
    """(status, allowed, tier, valid_from, credit step) of `account_view(state, as_of)`, without building it.

    What a gateway's decisions depend on: the streaming worker publishes a status
    record when this changes (allow/deny, the package, and the credits by `credit_step`).
    """
    status, package, used = _view_package(state, as_of)
    if package is None:
        return (status, _allows(status), None, None, None)
    return (status, _allows(status), package.tier, instant_text(package.valid_from),
            credit_step(package.credits_limit_micro, used))


def _allows(status: str) -> bool:
    return status == "active"


def allowed(view: dict) -> bool:
    """Whether a gateway may serve the account: only an active package allows service."""
    return _allows(view.get("status"))
