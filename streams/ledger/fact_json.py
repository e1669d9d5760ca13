"""Fact JSON without the pydantic models: the streaming worker's hot path.

Exactly `(fact.type, fact.model_dump_json().encode())` of `FactRecords.materialize()`
(tests/ledger/test_fact_json.py): the same keys in the same order (the models' field
order: the common fields, then type and the kind's own; balance.changed's `schema_version`
right after type, its `usage` last), Decimals as `str`, instants by `format_instant`. Only
speed lives here; the facts themselves are defined in `facts.py` and `schemas/outputs.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from schemas.events import format_instant
from schemas.outputs import BALANCE_CHANGED_VERSION
from streams.ledger.fact_ids import derive_event_id
from streams.ledger.json_bytes import json_bytes
from streams.ledger.packages import Package
from streams.ledger.rating import Rating
from streams.ledger.units import TEXT_FAST_BELOW, credits_text, from_micro

if TYPE_CHECKING:
    from streams.ledger.facts import FactRecords

__all__ = ["fact_payloads", "usage_charge_payload"]

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
        fragment = orjson.Fragment(json_bytes({
            "tier": package.tier, "period": package.period,
            "valid_from": format_instant(package.valid_from),
            "valid_until": format_instant(package.valid_until),
            "credits_limit": _decimal_json(package.credits_limit_micro)}))
        if len(_PACKAGE_REFS) >= _PACKAGE_REFS_MAX:
            _PACKAGE_REFS.clear()
        _PACKAGE_REFS[key] = fragment
    return fragment


def _usage_json(usage: dict, rating: Rating) -> dict:
    """`facts.usage_detail(usage, rating)` as pydantic serializes it; `usage`: the event's
    declared fields (`Usage.__dict__`, faster than the model's attributes)."""
    _, coefficient, offpeak, saved_micro = rating
    return {
        "model": usage["model"], "input_cache_hit_tokens": usage["input_cache_hit_tokens"],
        "input_cache_miss_tokens": usage["input_cache_miss_tokens"],
        "output_tokens": usage["output_tokens"], "coefficient": str(coefficient), "offpeak": offpeak,
        "credits_saved": _decimal_json(saved_micro), "cluster": usage["cluster"],
        "protocol": usage["protocol"], "key_id": usage["key_id"]}


def _balance_changed(fact_id: str, cause_id: str, cause_type: str, account_id: str, occurred_at: str,
                     package: Package, charged_micro: int, price, usage: dict | None) -> dict:
    """The fields of a balance.changed, in the model's order (the one body both builders use)."""
    return {
        "event_id": fact_id, "cause_event_id": cause_id, "cause_type": cause_type, "account_id": account_id,
        "occurred_at": occurred_at, "type": "balance.changed", "schema_version": BALANCE_CHANGED_VERSION,
        "package": _package_ref_json(package), "credits_charged": _decimal_json(charged_micro),
        "credits_used": _decimal_json(package.used_micro),
        "credits_remaining": _decimal_json(package.remaining_micro),
        "amount": None if price is None else str(price.amount),
        "currency": None if price is None else price.currency,
        "discount": None if price is None else price.discount,
        "usage": usage,
    }


def fact_payloads(records: "FactRecords") -> list[tuple[str, bytes]]:
    """(type, JSON) of each fact of `records`, exactly as `materialize`'s models serialize."""
    if not records.records:
        return []
    event = records.event
    cause_id, cause_type, account_id = event.event_id, event.type, records.account_id
    occurred_at = format_instant(event.occurred_at)
    out = []
    for ordinal, (kind, package, charged_micro, price, rating) in enumerate(records.records):
        fact_id = derive_event_id(kind, account_id, cause_id, ordinal)
        if kind == "bc":
            out.append(("balance.changed", json_bytes(_balance_changed(
                fact_id, cause_id, cause_type, account_id, occurred_at, package, charged_micro, price,
                None if rating is None else _usage_json(event.__dict__, rating)))))
            continue
        fact_type = _FACT_TYPES[kind]
        data = {"event_id": fact_id, "cause_event_id": cause_id, "cause_type": cause_type,
                "account_id": account_id, "occurred_at": occurred_at, "type": fact_type,
                "package": _package_ref_json(package), "credits_used": _decimal_json(package.used_micro)}
        if kind == "qr":
            data["credits_remaining"] = _decimal_json(package.remaining_micro)
        out.append((fact_type, json_bytes(data)))
    return out


def usage_charge_payload(usage: dict, package: Package, rating: Rating, occurred_at: str) -> bytes:
    """The one fact of a plain usage charge (`step.charge_plain_usage`: accepted, no exhaustion
    starts or ends), from the event's fields: exactly the balance.changed `fact_payloads`
    writes for it (ordinal 0, no price). `occurred_at`: the event's instant as `format_instant`."""
    cause_id, account_id = usage["event_id"], usage["account_id"]
    return json_bytes(_balance_changed(derive_event_id("bc", account_id, cause_id, 0), cause_id, "usage",
                                         account_id, occurred_at, package, rating[0], None,
                                         _usage_json(usage, rating)))
