"""What a gateway records besides usage: requests it served but could not meter.

A response without usage, or with inconsistent usage (cached tokens above the prompt,
negatives), is never charged as zero in silence: the gateway publishes one
`UnmeteredRequest` to `tokenplan.unmetered` (kept forever, keyed by account) with the
named reason, counts it in its metrics and logs it, so an operator can audit and bill it.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import (ACCOUNT_ID_LENGTH_MAX, CLIENT_LENGTH_MAX, EVENT_ID_LENGTH_MAX, KEY_ID_LENGTH_MAX,
                            MODEL_NAME_LENGTH_MAX, Instant)

__all__ = ["UnmeteredRequest"]


class UnmeteredRequest(BaseModel):
    """One served request whose usage could not be turned into token counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["request.unmetered"] = "request.unmetered"
    #: The id its usage event would have had (idempotency key or gateway request id).
    event_id: Annotated[str, Field(min_length=1, max_length=EVENT_ID_LENGTH_MAX)]
    occurred_at: Instant
    account_id: Annotated[str, Field(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX)]
    key_id: Annotated[str, Field(min_length=1, max_length=KEY_ID_LENGTH_MAX)]
    model: Annotated[str, Field(max_length=MODEL_NAME_LENGTH_MAX)]
    cluster: Literal["cn", "sgp", "ams"]
    protocol: Literal["openai", "anthropic"]
    client: Annotated[str, Field(max_length=CLIENT_LENGTH_MAX)] | None = None
    #: gateway.usage.counts.UsageError.reason, e.g. usage_missing, usage_cached_exceeds_prompt.
    reason: str
    detail: str
    #: The usage object exactly as the upstream sent it (null when there was none).
    usage: dict | None = None
    upstream_status: int
