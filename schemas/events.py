"""Input event contract (issue 3): what gateways and billing publish.

Frozen pydantic v2 models, one per event `type`, joined in a discriminated
union on `type`. Validation is strict: a token count given as "5", 5.0 or
true is refused, never coerced. `occurred_at` must be RFC 3339 *with* an
offset; it is normalized to UTC. Extra fields are kept (``extra="allow"``)
but no rule reads them.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
)

__all__ = [
    "ACCOUNT_ID_LENGTH_MAX",
    "EVENT_ID_LENGTH_MAX",
    "TOKENS_PER_FIELD_MAX",
    "Event",
    "EVENT_ADAPTER",
    "Instant",
    "PlanPurchased",
    "PlanRenewed",
    "PlanUpgraded",
    "QuotaRefreshed",
    "Usage",
    "format_instant",
    "parse_instant",
]

#: Contract bounds. `streams.ledger.limits.Limits` defaults to these and may only tighten them.
EVENT_ID_LENGTH_MAX = 128
ACCOUNT_ID_LENGTH_MAX = 128
#: 10M tokens per field per event: the largest model context today is ~1M tokens,
#: so 10x headroom, while 3 x 10M x 2100 credits still fits far below any sane bound.
TOKENS_PER_FIELD_MAX = 10_000_000
MODEL_NAME_LENGTH_MAX = 64
KEY_ID_LENGTH_MAX = 128
CLIENT_LENGTH_MAX = 512

# RFC 3339 date-time, offset mandatory, at most microsecond precision (more
# digits would be silently truncated by datetime: refused instead).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
#: The common spelling, a subset of `_RFC3339`: ASCII digits, 'T', 'Z'. For it
#: `fromisoformat` alone gives the result (already UTC, nothing to upper-case).
_RFC3339_PLAIN_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")
_from_isoformat = datetime.fromisoformat


_UTC = timezone.utc


def parse_instant(value: Any) -> datetime:
    """Parse an RFC 3339 string (or accept an aware datetime) into a UTC datetime.

    Why so strict: an instant without an offset is ambiguous by 16 hours
    between UTC and Beijing, which moves usage across the off-peak boundary.
    """
    if type(value) is str and _RFC3339_PLAIN_UTC.fullmatch(value) is not None:
        # Hot path (every event): the general branch below would upper-case nothing and
        # convert a datetime that is already in timezone.utc; the same value, or the same error.
        return _from_isoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("datetime must carry a UTC offset")
        return value.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise ValueError("instant must be an RFC 3339 string")
    if _RFC3339.fullmatch(value) is None:
        raise ValueError("instant must be RFC 3339 with an offset, e.g. 2026-05-27T00:00:00+08:00")
    return datetime.fromisoformat(value.upper()).astimezone(timezone.utc)


def format_instant(value: datetime) -> str:
    """Format a UTC instant as RFC 3339 with a 'Z' suffix (microseconds only when present)."""
    if value.tzinfo is _UTC:
        # Already UTC: isoformat ends with "+00:00"; same text, without two conversions.
        return value.isoformat()[:-6] + "Z"
    text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return text + "Z"


#: A point in time: RFC 3339 with offset on the wire, an aware UTC datetime in Python.
Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    PlainSerializer(format_instant, return_type=str, when_used="json"),
]

EventId = Annotated[str, Field(min_length=1, max_length=EVENT_ID_LENGTH_MAX)]
AccountId = Annotated[str, Field(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX)]
TokenCount = Annotated[int, Field(ge=0, le=TOKENS_PER_FIELD_MAX)]
Tier = Literal["lite", "standard", "pro", "max"]
Period = Literal["monthly", "annual"]
Currency = Literal["USD", "CNY"]


class _EventBase(BaseModel):
    """Fields common to every input event."""

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    event_id: EventId
    occurred_at: Instant


class Usage(_EventBase):
    """One gateway request's token counts. `key_id` names the key, never the secret."""

    type: Literal["usage"]
    account_id: AccountId
    model: Annotated[str, Field(min_length=1, max_length=MODEL_NAME_LENGTH_MAX)]
    input_cache_hit_tokens: TokenCount
    input_cache_miss_tokens: TokenCount
    output_tokens: TokenCount
    key_id: Annotated[str, Field(min_length=1, max_length=KEY_ID_LENGTH_MAX)]
    cluster: Literal["cn", "sgp", "ams"]
    protocol: Literal["openai", "anthropic"]
    client: Annotated[str, Field(max_length=CLIENT_LENGTH_MAX)] | None = None


class PlanPurchased(_EventBase):
    """A package bought at `occurred_at` (billing)."""

    type: Literal["plan.purchased"]
    account_id: AccountId
    tier: Tier
    period: Period
    currency: Currency
    auto_renew: bool


class PlanUpgraded(_EventBase):
    """The valid package replaced at `occurred_at` by a strictly higher tier."""

    type: Literal["plan.upgraded"]
    account_id: AccountId
    tier: Tier
    period: Period
    currency: Currency


class PlanRenewed(_EventBase):
    """Auto-renewal: the next period of the latest package's tier and period."""

    type: Literal["plan.renewed"]
    account_id: AccountId


class QuotaRefreshed(_EventBase):
    """Consumption before `occurred_at` stops counting; no `account_id` means every account."""

    type: Literal["quota.refreshed"]
    account_id: AccountId | None = None


Event = Annotated[
    Union[Usage, PlanPurchased, PlanUpgraded, PlanRenewed, QuotaRefreshed],
    Field(discriminator="type"),
]

#: Validates a dict (python mode) or JSON bytes into one of the event models.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: type string -> model class, for exports and dispatch.
EVENT_MODELS: dict[str, type[_EventBase]] = {
    "usage": Usage,
    "plan.purchased": PlanPurchased,
    "plan.upgraded": PlanUpgraded,
    "plan.renewed": PlanRenewed,
    "quota.refreshed": QuotaRefreshed,
}
