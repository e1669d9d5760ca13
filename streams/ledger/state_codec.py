"""AccountState <-> plain JSON-able dict, for table values and snapshots.

The state is small and fixed-size in steady state (package headers, refresh instants,
discount flags): the applied event ids and usage entries are in the event memory
(`streams.ledger.memory`). It is written on every unit of work, so its keys are short;
this table is their key:

| key | field |
|---|---|
| `t` `p` `c` | tier, period, currency |
| `f` `u` | valid_from, valid_until |
| `a` `i` `m` | renewal anchor, period index, months per period |
| `l` | credits_limit |
| `o` | opened_by (the opening event's id; names the package's usage entries) |
| `r` | last_reset |
| `s` | segments: [[segment start, credits], ...] (usage per refresh segment) |
| `x` | exhausted flag |

Credits are decimal strings, instants RFC 3339 'Z' strings. A snapshot is a cache of
derived state, never part of the history: `from_dict(to_dict(s))` behaves exactly like
`s` (tested), and a malformed value raises ValueError (never a silent repair).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import orjson

from schemas.events import parse_instant
from streams.ledger.json_cache import instant_text
from streams.ledger.limits import Limits
from streams.ledger.packages import Package
from streams.ledger.units import credits_text, parse_micro_text, to_micro

if TYPE_CHECKING:
    from streams.ledger.state import AccountState

__all__ = ["STATE_FORMAT_VERSION", "state_from_dict", "state_to_dict", "state_to_json"]

#: Bump with an upcaster when the layout changes. 2: headers only (ids and usage
#: entries moved to the event memory; state of format 1 is rebuilt by a replay).
STATE_FORMAT_VERSION = 2


def _instant(value: Any):
    return None if value is None else parse_instant(value)


def _text(instant) -> str | None:
    return None if instant is None else instant_text(instant)


def _micro(value: Any) -> int:
    if type(value) is str:
        micro = parse_micro_text(value)  # our own canonical text: exact, fast
        if micro is not None:
            return micro
    if not isinstance(value, str):
        raise ValueError("credits must be decimal strings")
    try:
        return to_micro(Decimal(value))
    except InvalidOperation as error:
        raise ValueError(f"not a decimal: {value!r}") from error


def _package_to_dict(package: Package) -> dict:
    return {
        "t": package.tier, "p": package.period, "c": package.currency,
        "f": instant_text(package.valid_from), "u": instant_text(package.valid_until),
        "a": instant_text(package.anchor), "i": package.index, "m": package.period_months,
        "l": credits_text(package.credits_limit_micro), "o": package.opened_by,
        "r": instant_text(package.last_reset),
        "s": [[instant_text(start), credits_text(micro)] for start, micro in package.segments],
        "x": package.exhausted,
    }


def _package_from_dict(data: dict) -> Package:
    segments = tuple((parse_instant(start), _micro(micro)) for start, micro in data["s"])
    last_reset = parse_instant(data["r"])
    return Package(
        tier=str(data["t"]), period=str(data["p"]), currency=str(data["c"]),
        valid_from=parse_instant(data["f"]), valid_until=parse_instant(data["u"]),
        anchor=parse_instant(data["a"]), index=int(data["i"]), period_months=int(data["m"]),
        credits_limit_micro=_micro(data["l"]), opened_by=str(data["o"]), last_reset=last_reset,
        used_micro=sum(micro for start, micro in segments if start >= last_reset),
        segments=segments, exhausted=bool(data["x"]),
    )


def state_to_dict(state: "AccountState") -> dict:
    """Plain dict of str/int/bool/None/list/dict only."""
    flags = (int(state.had_package) | int(state.first_purchase_discount_used) << 1
             | int(state.auto_renew_activated) << 2 | int(state.auto_renew_discount_used) << 3)
    return {
        "format": STATE_FORMAT_VERSION,
        "account_id": state.account_id,
        "packages": [_package_to_dict(p) for p in state.packages],
        "refreshes": [instant_text(t) for t in state.refreshes],
        #: bit 0 had_package, 1 first_purchase_discount_used, 2 auto_renew_activated,
        #: 3 auto_renew_discount_used.
        "flags": flags,
        "pruned_until": _text(state.pruned_until),
        "first_valid_from": _text(state.first_valid_from),
    }


def state_to_json(state: "AccountState") -> bytes:
    """`orjson.dumps(state_to_dict(state))`."""
    return orjson.dumps(state_to_dict(state))


def state_from_dict(data: dict, limits: Limits) -> dict:
    """The AccountState fields of `data` (`AccountState(**fields)`); ValueError (never a
    silent repair) on anything malformed. Returns fields, not the state, so that this
    module needs no import of `state.py` (which imports it)."""
    try:
        if data.get("format") != STATE_FORMAT_VERSION:
            raise ValueError(f"unknown state format {data.get('format')!r} (format 1 state is "
                             "rebuilt by replaying the ledger-log under a new TOKENPLAN_APP_ID)")
        flags = int(data["flags"])
        return dict(
            account_id=str(data["account_id"]),
            packages=tuple(_package_from_dict(p) for p in data["packages"]),
            refreshes=tuple(parse_instant(t) for t in data["refreshes"]),
            had_package=bool(flags & 1), first_purchase_discount_used=bool(flags & 2),
            auto_renew_activated=bool(flags & 4), auto_renew_discount_used=bool(flags & 8),
            pruned_until=_instant(data["pruned_until"]),
            first_valid_from=_instant(data["first_valid_from"]),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"malformed account state: {error!r}") from error
