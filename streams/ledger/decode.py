"""Decoding: raw bytes, text or dict -> a validated Event, or a named Rejection.

Never raises on bad input: every failure becomes a `Rejection` whose detail
names the field and the problem but never echoes the input (which may hold
a secret). Order of checks: size, JSON, secret keys, contract, limits.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import (
    CLIENT_LENGTH_MAX,
    EVENT_ADAPTER,
    KEY_ID_LENGTH_MAX,
    MODEL_NAME_LENGTH_MAX,
    Event,
    Usage,
    parse_instant,
)
from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.ledger.rejections import Reason, Rejection, contains_secret, reject

__all__ = ["decode_event", "find_secret_field", "plain_usage_fields"]

_TOKEN_FIELDS = ("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens")
_TIMESTAMP_FIELDS = ("occurred_at",)
_ID_FIELDS = ("event_id", "account_id")


def find_secret_field(value: Any, path: str = "") -> str | None:
    """Path of the first string (value or key) shaped like a secret key, None when clean."""
    if isinstance(value, str):
        return path or "<value>" if contains_secret(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and contains_secret(key):
                return path or "<key>"
            found = find_secret_field(item, child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found = find_secret_field(item, f"{path}[{position}]")
            if found is not None:
                return found
    return None


def _parse(raw: bytes | bytearray | memoryview | str | dict, limits: Limits
           ) -> tuple[dict, bool] | Rejection:
    """Bytes/str -> (dict, may_hold_secret) via orjson, with the size limit first.

    may_hold_secret is False only when the raw bytes contain neither "tp-"
    nor a JSON escape: then no decoded string can hold a key, and the
    per-field scan is skipped (the usual case, and a hot path).
    """
    if isinstance(raw, dict):
        return raw, True
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return reject(Reason.INVALID_JSON, f"cannot decode a {type(raw).__name__}")
    if len(raw) > limits.event_bytes_max:
        return reject(Reason.EVENT_TOO_LARGE, f"{len(raw)} bytes > {limits.event_bytes_max}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return reject(Reason.INVALID_JSON, f"not JSON: {str(error).split(':')[0]}")
    if not isinstance(data, dict):
        return reject(Reason.INVALID_JSON, "the event must be a JSON object")
    return data, _may_hold_secret(raw)


def _may_hold_secret(raw: bytes | bytearray | memoryview) -> bool:
    """False only when no decoded string can hold a key: no "tp-" and no JSON \\u escape.

    The one-byte search for a backslash comes first: it is cheap, and usually settles it.
    """
    return b"tp-" in raw or (b"\\" in raw and b"\\u" in raw)


def _reason_for(error: dict) -> Reason:
    """Map one pydantic error to our named reason."""
    kind, location = error["type"], error["loc"]
    field = str(location[-1]) if location else ""
    if kind == "union_tag_invalid":
        return Reason.UNKNOWN_TYPE
    if field in _TIMESTAMP_FIELDS:
        return Reason.INVALID_TIMESTAMP
    if field in _TOKEN_FIELDS and kind in ("greater_than_equal", "less_than_equal"):
        return Reason.TOKENS_OUT_OF_RANGE
    if field in _ID_FIELDS and kind == "string_too_long":
        return Reason.ID_TOO_LONG
    return Reason.INVALID_EVENT


def _describe(errors: list[dict]) -> str:
    """'field: message' for each error, never the offending input value."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(p) for p in error["loc"][1:] or error["loc"]) or "<event>"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _check_limits(event: Event, limits: Limits) -> Rejection | None:
    """Deployment limits, which may be tighter than the contract's."""
    if len(event.event_id) > limits.event_id_length_max or (
            event.account_id is not None and len(event.account_id) > limits.account_id_length_max):
        return reject(Reason.ID_TOO_LONG, event_id=None, account_id=None)
    if event.type == "usage":
        for name in _TOKEN_FIELDS:
            if getattr(event, name) > limits.tokens_per_field_max:
                return reject(Reason.TOKENS_OUT_OF_RANGE,
                              f"{name} above tokens_per_field_max={limits.tokens_per_field_max}",
                              event_id=event.event_id, account_id=event.account_id)
    return None


def _string_or_none(data: dict, key: str, limit: int) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def decode_event(raw: bytes | bytearray | memoryview | str | dict,
                 limits: Limits = DEFAULT_LIMITS) -> Event | Rejection:
    """Decode and validate one input event. Never raises on bad input."""
    if type(raw) is bytes and len(raw) <= limits.event_bytes_max:
        # Hot path (a Kafka value or a file line): the same steps as `_parse`, inlined.
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return reject(Reason.INVALID_JSON, f"not JSON: {str(error).split(':')[0]}")
        if type(data) is not dict:
            return reject(Reason.INVALID_JSON, "the event must be a JSON object")
        may_hold_secret = _may_hold_secret(raw)
        if not may_hold_secret:
            event = _fast_usage(data, limits)
            if event is not None:
                return event
        return _validate(data, may_hold_secret, limits)
    parsed = _parse(raw, limits)
    if isinstance(parsed, Rejection):
        return parsed
    data, may_hold_secret = parsed
    if not may_hold_secret:
        event = _fast_usage(data, limits)
        if event is not None:
            return event
    return _validate(data, may_hold_secret, limits)


def _validate(data: dict, may_hold_secret: bool, limits: Limits) -> Event | Rejection:
    """The general path: secret scan, then the pydantic models and the deployment limits."""
    event_id = _string_or_none(data, "event_id", limits.event_id_length_max)
    account_id = _string_or_none(data, "account_id", limits.account_id_length_max)
    secret_at = find_secret_field(data) if may_hold_secret else None
    if secret_at is not None:
        return reject(Reason.SECRET_IN_EVENT, f"field {secret_at} holds a key-shaped value (tp-...)",
                      event_id=event_id, account_id=account_id)
    try:
        event = EVENT_ADAPTER.validate_python(data)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        return reject(_reason_for(errors[0]), _describe(errors),
                      event_id=event_id, account_id=account_id)
    return _check_limits(event, limits) or event


# ------------------------------------------------------------------ usage fast path
#
# Usage events are >99% of the traffic. This path checks a usage dict by hand
# with exactly the model's rules and builds the model without pydantic's
# validator; it only ever *accepts*. Anything it is unsure about goes to the
# pydantic path, which also writes the precise rejection. tests/ledger/
# test_decode.py checks with hypothesis that both paths agree.

_CLUSTERS = frozenset(("cn", "sgp", "ams"))
_PROTOCOLS = frozenset(("openai", "anthropic"))
_object_setattr = object.__setattr__
#: The required usage fields but `type`, in one C call (12 dict.get calls cost more).
_required_fields = itemgetter("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens",
                              "event_id", "account_id", "model", "key_id", "occurred_at", "cluster",
                              "protocol")
_new_usage = Usage.__new__


def plain_usage_fields(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """The declared fields of a usage line that `decode_event` accepts on its fast path, without the model.

    Equal to the `__dict__` of the Usage `decode_event(raw, limits)` would return (key
    order aside; extras left out: no rule reads them). None says nothing about the
    line: ask `decode_event`. For a caller that reads only the fields (the replay fold):
    building the pydantic model costs as much as checking the line.
    """
    if type(raw) is not bytes or len(raw) > limits.event_bytes_max:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or _may_hold_secret(raw):
        return None
    return _plain_usage_fields(data, limits, in_place=True)


def _fast_usage(data: dict, limits: Limits) -> Usage | None:
    """A Usage built without the validator when `data` is plainly valid, else None."""
    values = _plain_usage_fields(data, limits)
    if values is None:
        return None
    size = len(data)
    extra = ({k: v for k, v in data.items() if k not in values}
             if size > (12 if "client" in data else 11) else {})
    event = _new_usage(Usage)
    _object_setattr(event, "__dict__", values)
    _object_setattr(event, "__pydantic_extra__", extra)
    _object_setattr(event, "__pydantic_fields_set__", set(data))  # as pydantic: given keys
    _object_setattr(event, "__pydantic_private__", None)
    return event


def _plain_usage_fields(data: dict, limits: Limits, *, in_place: bool = False) -> dict[str, Any] | None:
    """The model's field values (its `__dict__`, in field order) when `data` is plainly valid usage, else None.

    in_place: the caller owns `data` and needs no field order; when `data` holds exactly
    the declared fields, it is completed and returned (one dict fewer per event).
    """
    if data.get("type") != "usage":
        return None
    try:
        hit, miss, output, event_id, account_id, model, key_id, occurred_at, cluster, protocol = \
            _required_fields(data)
    except KeyError:  # a required field is missing: the general path names it
        return None
    client = data.get("client")
    tokens_max = limits.tokens_per_field_max
    # Types first: `in` on a frozenset would raise on an unhashable value (a list).
    if not (type(hit) is int and type(miss) is int and type(output) is int
            and 0 <= hit <= tokens_max and 0 <= miss <= tokens_max and 0 <= output <= tokens_max
            and type(event_id) is str and 0 < len(event_id) <= limits.event_id_length_max
            and type(account_id) is str and 0 < len(account_id) <= limits.account_id_length_max
            and type(model) is str and 0 < len(model) <= MODEL_NAME_LENGTH_MAX
            and type(key_id) is str and 0 < len(key_id) <= KEY_ID_LENGTH_MAX
            and type(occurred_at) is str
            and type(cluster) is str and cluster in _CLUSTERS
            and type(protocol) is str and protocol in _PROTOCOLS
            and (client is None or (type(client) is str and len(client) <= CLIENT_LENGTH_MAX))):
        return None
    try:
        instant = parse_instant(occurred_at)
    except ValueError:
        return None
    if in_place and len(data) == (12 if "client" in data else 11):  # all required keys are there
        data["occurred_at"] = instant
        data["client"] = client
        return data
    return {"event_id": event_id, "occurred_at": instant, "type": "usage",
            "account_id": account_id, "model": model,
            "input_cache_hit_tokens": hit, "input_cache_miss_tokens": miss,
            "output_tokens": output, "key_id": key_id, "cluster": cluster,
            "protocol": protocol, "client": client}
