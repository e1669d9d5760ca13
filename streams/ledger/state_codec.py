"""AccountState <-> plain JSON-able dict, for Faust table values and snapshots.

Credits are decimal strings, instants RFC 3339 'Z' strings. A snapshot is a
cache of derived state, never part of the history: `from_dict(to_dict(s))`
must behave exactly like `s` (tested), and a malformed value raises ValueError.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import orjson

from schemas.events import format_instant, parse_instant
from streams.ledger.dedupe import AppliedIds
from streams.ledger.json_cache import instant_text
from streams.ledger.limits import Limits
from streams.ledger.packages import Package, UsageLog
from streams.ledger.units import credits_text, parse_micro_text, parse_micro_texts, to_micro

if TYPE_CHECKING:
    from streams.ledger.account import AccountState

__all__ = ["STATE_FORMAT_VERSION", "state_from_dict", "state_to_dict", "state_to_json"]

#: Bump with an upcaster when the layout changes.
STATE_FORMAT_VERSION = 1


def _instant(value: Any):
    return None if value is None else parse_instant(value)


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


# ---------------------------------------------------------------- usage logs in bulk
#
# A busy account's state is mostly its usage log (up to usage_entries_max
# entries), and the streaming worker decodes and encodes the whole state on
# every event. Instants are formatted and checked in bulk by orjson, whose
# datetime format with OPT_UTC_Z is exactly `format_instant`'s; the texts are
# cached on the log (`UsageLog.encoded`), so only new entries are encoded.

_fromisoformat = datetime.fromisoformat
_dumps = orjson.dumps
_loads = orjson.loads
_OPT_UTC_Z = orjson.OPT_UTC_Z


def _format_instants(instants: list[datetime]) -> list[str]:
    """`[format_instant(t) for t in instants]`, in one orjson call when all are UTC."""
    try:
        blob = _dumps(instants, option=_OPT_UTC_Z)
    except TypeError:
        blob = None
    if blob is not None and blob.count(b'Z"') == len(instants):  # every one had offset 0
        return _loads(blob)
    return [format_instant(t) for t in instants]


def _encode_entries(entries: list[tuple[datetime, int]]) -> list[tuple[str, str]]:
    """Usage entries as (RFC 3339 text, credits text) pairs."""
    instants = _format_instants([instant for instant, _ in entries])
    return list(zip(instants, [credits_text(micro) for _, micro in entries]))


def _log_from_json(pairs: Any) -> UsageLog:
    """Inverse of `UsageLog.encoded`; keeps the texts as the log's cache when canonical.

    Fast path only for exactly our own output (lists of two canonical strings,
    checked in bulk); anything else takes the general per-entry path, which
    accepts any RFC 3339 instant and decimal text, or raises.
    """
    if (type(pairs) is list and set(map(type, pairs)) <= {list}
            and set(map(len, pairs)) <= {2}):
        times = [pair[0] for pair in pairs]
        texts = [pair[1] for pair in pairs]
        if set(map(type, times)) <= {str} and set(map(type, texts)) <= {str}:
            try:
                instants = list(map(_fromisoformat, times))
            except ValueError:
                instants = None
            if instants is not None and _dumps(instants, option=_OPT_UTC_Z) == _dumps(times):
                micros = parse_micro_texts(texts)
                if micros is not None:
                    return UsageLog(list(zip(instants, micros)), len(micros),
                                    list(zip(times, texts)))
    return UsageLog([(parse_instant(t), _micro(m)) for t, m in pairs])


def _package_to_dict(package: Package, log: Any = None) -> dict:
    """The package as plain JSON-able values; `log` replaces the encoded log when given."""
    return {
        "tier": package.tier, "period": package.period, "currency": package.currency,
        "valid_from": instant_text(package.valid_from),
        "valid_until": instant_text(package.valid_until),
        "anchor": instant_text(package.anchor), "index": package.index,
        "period_months": package.period_months,
        "credits_limit": credits_text(package.credits_limit_micro),
        "opened_by": package.opened_by, "last_reset": instant_text(package.last_reset),
        "credits_used": credits_text(package.used_micro),
        "log": package.log.encoded(_encode_entries) if log is None else log,
        "compacted": [[instant_text(t), credits_text(m)] for t, m in package.compacted],
        "horizon": None if package.horizon is None else instant_text(package.horizon),
        "exhausted": package.exhausted,
    }


# ---------------------------------------------------------------- state as JSON bytes
#
# The streaming worker serializes an account's whole state on every event
# (`AccountRecord.to_bytes`). `state_to_json` gives exactly
# `orjson.dumps(state_to_dict(state))` without building the dict of what did
# not change: the usage log and the dedupe memory come from their serialized
# caches (`json_cache.JsonArray`), and a package other than the newest (a
# closed period, unchanged by usage of the current one) is serialized once and
# kept by identity (packages are never changed after construction).

_Fragment = orjson.Fragment
#: id(package) -> (package, its JSON). The strong reference keeps the id unique
#: while the entry lives; a hit checks `cached is package`. Bounded: cleared when full.
_PACKAGE_JSON: dict[int, tuple[Package, bytes]] = {}
_PACKAGE_JSON_MAX = 2048


def _package_json(package: Package) -> bytes:
    """`orjson.dumps(_package_to_dict(package))`, the log from its serialized cache."""
    return _dumps(_package_to_dict(package, _Fragment(package.log.encoded_json(_encode_entries))))


def _kept_package_json(package: Package) -> bytes:
    """`_package_json(package)`, memoized by identity (for packages that rarely change)."""
    cached = _PACKAGE_JSON.get(id(package))
    if cached is not None and cached[0] is package:
        return cached[1]
    data = _package_json(package)
    if len(_PACKAGE_JSON) >= _PACKAGE_JSON_MAX:
        _PACKAGE_JSON.clear()
    _PACKAGE_JSON[id(package)] = (package, data)
    return data


def state_to_json(state: "AccountState") -> bytes:
    """Exactly `orjson.dumps(state_to_dict(state))`, serializing only what is new."""
    packages = state.packages
    if packages:
        parts = [_kept_package_json(p) for p in packages[:-1]]
        parts.append(_package_json(packages[-1]))
        packages_json = b"[" + b",".join(parts) + b"]"
    else:
        packages_json = b"[]"
    return _dumps({
        "format": STATE_FORMAT_VERSION,
        "account_id": state.account_id,
        "packages": _Fragment(packages_json),
        **_account_fields(state),
        "applied": _Fragment(state.applied.json_pairs()),
    })


def _package_from_dict(data: dict) -> Package:
    package = Package(
        tier=str(data["tier"]), period=str(data["period"]), currency=str(data["currency"]),
        valid_from=parse_instant(data["valid_from"]), valid_until=parse_instant(data["valid_until"]),
        anchor=parse_instant(data["anchor"]), index=int(data["index"]),
        period_months=int(data["period_months"]),
        credits_limit_micro=_micro(data["credits_limit"]), opened_by=str(data["opened_by"]),
        last_reset=parse_instant(data["last_reset"]), used_micro=_micro(data["credits_used"]),
        log=_log_from_json(data["log"]),
        compacted=tuple((parse_instant(t), _micro(m)) for t, m in data["compacted"]),
        horizon=_instant(data["horizon"]), exhausted=bool(data["exhausted"]),
    )
    if package._count_from(package.last_reset) != package.used_micro:
        raise ValueError("credits_used does not match the package's usage entries")
    return package


def _account_fields(state: "AccountState") -> dict:
    """The account-level fields, in the order both encoders write them (between packages and applied)."""
    return {
        "refreshes": [instant_text(t) for t in state.refreshes],
        "had_package": state.had_package,
        "first_purchase_discount_used": state.first_purchase_discount_used,
        "auto_renew_activated": state.auto_renew_activated,
        "auto_renew_discount_used": state.auto_renew_discount_used,
        "pruned_until": None if state.pruned_until is None else instant_text(state.pruned_until),
        "first_valid_from": None if state.first_valid_from is None else instant_text(state.first_valid_from),
    }


def state_to_dict(state: "AccountState") -> dict:
    """Plain dict of str/int/bool/None/list/dict only."""
    return {
        "format": STATE_FORMAT_VERSION,
        "account_id": state.account_id,
        "packages": [_package_to_dict(p) for p in state.packages],
        **_account_fields(state),
        "applied": list(map(list, state.applied.pairs())),
    }


def state_from_dict(data: dict, limits: Limits) -> "AccountState":
    """Rebuild an AccountState; ValueError (never a silent repair) on anything malformed."""
    from streams.ledger.account import AccountState

    try:
        if data.get("format") != STATE_FORMAT_VERSION:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        return AccountState(
            account_id=str(data["account_id"]),
            applied=AppliedIds.from_pairs(limits.applied_ids_max, data["applied"]),
            packages=tuple(_package_from_dict(p) for p in data["packages"]),
            refreshes=tuple(parse_instant(t) for t in data["refreshes"]),
            had_package=bool(data["had_package"]),
            first_purchase_discount_used=bool(data["first_purchase_discount_used"]),
            auto_renew_activated=bool(data["auto_renew_activated"]),
            auto_renew_discount_used=bool(data["auto_renew_discount_used"]),
            pruned_until=_instant(data["pruned_until"]),
            first_valid_from=_instant(data["first_valid_from"]),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"malformed account state: {error!r}") from error
