"""Fact JSON without the pydantic models: the streaming worker's hot path.

Exactly `(fact.type, fact.model_dump_json().encode())` of `FactRecords.materialize()`
(tested): the same keys in the same order (the models' field order: the common fields,
then type and the kind's own), Decimals as `str`, instants by `format_instant`. Only
speed lives here; the facts themselves are defined in `facts.py` and `schemas/outputs.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from schemas.events import format_instant
from streams.ledger.fact_ids import derive_event_id
from streams.ledger.packages import Package
from streams.ledger.units import TEXT_FAST_BELOW, credits_text, from_micro

if TYPE_CHECKING:
    from streams.ledger.facts import FactRecords

__all__ = ["fact_payloads"]

_FACT_TYPES = {"bc": "balance.changed", "qe": "quota.exhausted", "qr": "quota.restored"}


def _decimal_json(micro: int) -> str:
    """`str(from_micro(micro))`: how pydantic writes the Decimal of a fact (as a JSON string)."""
    if type(micro) is int and 0 <= micro < TEXT_FAST_BELOW:
        # from_micro is integral (exponent 0) or normalized with at most 6 fraction
        # digits: str() never uses exponent form then, so it is the plain text.
        return credits_text(micro)
    return str(from_micro(micro))


#: (tier, period, valid_from, valid_until, credits limit) -> the JSON of `package_ref`.
_PACKAGE_REFS: dict[tuple, orjson.Fragment] = {}
_PACKAGE_REFS_MAX = 4096


def _package_ref_json(package: Package) -> orjson.Fragment:
    """`package_ref(package)` as pydantic serializes it, memoized (it repeats on every charge)."""
    key = (package.tier, package.period, package.valid_from, package.valid_until,
           package.credits_limit_micro)
    fragment = _PACKAGE_REFS.get(key)
    if fragment is None:
        fragment = orjson.Fragment(orjson.dumps({
            "tier": package.tier, "period": package.period,
            "valid_from": format_instant(package.valid_from),
            "valid_until": format_instant(package.valid_until),
            "credits_limit": _decimal_json(package.credits_limit_micro)}))
        if len(_PACKAGE_REFS) >= _PACKAGE_REFS_MAX:
            _PACKAGE_REFS.clear()
        _PACKAGE_REFS[key] = fragment
    return fragment


def fact_payloads(records: "FactRecords") -> list[tuple[str, bytes]]:
    """(type, JSON) of each fact of `records`, exactly as `materialize`'s models serialize."""
    if not records.records:
        return []
    event = records.event
    cause_id, cause_type, account_id = event.event_id, event.type, records.account_id
    occurred_at = format_instant(event.occurred_at)
    out = []
    for ordinal, (kind, package, charged_micro, price) in enumerate(records.records):
        fact_type = _FACT_TYPES[kind]
        data = {
            "event_id": derive_event_id(kind, account_id, cause_id, ordinal),
            "cause_event_id": cause_id, "cause_type": cause_type, "account_id": account_id,
            "occurred_at": occurred_at, "type": fact_type,
            "package": _package_ref_json(package),
        }
        if kind == "bc":
            data["credits_charged"] = _decimal_json(charged_micro)
            data["credits_used"] = _decimal_json(package.used_micro)
            data["credits_remaining"] = _decimal_json(package.remaining_micro)
            data["amount"] = None if price is None else str(price.amount)
            data["currency"] = None if price is None else price.currency
            data["discount"] = None if price is None else price.discount
        elif kind == "qr":
            data["credits_used"] = _decimal_json(package.used_micro)
            data["credits_remaining"] = _decimal_json(package.remaining_micro)
        else:
            data["credits_used"] = _decimal_json(package.used_micro)
        out.append((fact_type, orjson.dumps(data)))
    return out
