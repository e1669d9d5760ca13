"""Reading a provider payload the same way whatever its form: SDK model, dict, or JSON.

The gateway holds typed objects when it uses an SDK and raw JSON when it proxies bytes;
one accessor for both keeps the mappings in `openai.py` and `anthropic.py` written once.
"""
from __future__ import annotations

from collections.abc import Mapping

import orjson
from pydantic import BaseModel

from gateway.usage.counts import UsageError, check_count

__all__ = ["field", "load", "optional_count", "required_count"]


def load(payload: object) -> object:
    """A JSON payload (bytes or str) decoded; anything else returned as it is."""
    if isinstance(payload, (bytes, bytearray, memoryview, str)):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise UsageError("response_not_json", f"payload is not JSON ({error})") from None
    return payload


def field(obj: object, name: str, where: str) -> object:
    """`obj.name` for a dict or a pydantic model; None when absent.

    Anything else (a list, a number) is refused: reading it as "no field" would turn a
    malformed payload into zero tokens.
    """
    if isinstance(obj, Mapping):
        return obj.get(name)
    if isinstance(obj, BaseModel):
        return getattr(obj, name, None)
    raise UsageError("usage_malformed", f"{where} is {type(obj).__name__}, not an object")


def required_count(usage: object, name: str, where: str) -> int:
    """A count the provider always sends: absent or null is an error, not 0."""
    value = field(usage, name, where)
    if value is None:
        raise UsageError("usage_field_missing", f"{where}.{name} is missing")
    return check_count(value, f"{where}.{name}")


def optional_count(obj: object, name: str, where: str) -> int:
    """A count the provider may omit or send as null (cache fields): then 0."""
    if obj is None:
        return 0
    value = field(obj, name, where)
    return 0 if value is None else check_count(value, f"{where}.{name}")
