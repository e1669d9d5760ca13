"""The usage-policy contract: violations seen by gateways, and what the policy decides.

The product document allows the plan's quota only from programming tools; clearly
non-coding use (scripts, application backends) may get a key suspended. So each request
a gateway classifies as `non_coding` becomes a `policy.violation` on `tokenplan.policy`
(keyed by account_id), an operator's reinstatement a `key.reinstated` there too, and the
worker's policy fold (`streams.ledger.usage_policy`) emits `policy.warning`,
`key.suspended` and `key.reinstated` facts on `tokenplan.policy-facts`, and each key's
current state on the compacted `tokenplan.key-status` (key = key_id), which gateways
follow. Like billing, it is a log: a replay of `tokenplan.policy` gives the same decisions.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.events import (ACCOUNT_ID_LENGTH_MAX, CLIENT_LENGTH_MAX, EVENT_ID_LENGTH_MAX, KEY_ID_LENGTH_MAX,
                            Instant)

__all__ = ["Classification", "KeyReinstated", "KeyStatusRecord", "POLICY_INPUT_ADAPTER", "PolicyFact",
           "PolicyViolation"]

EventId = Annotated[str, Field(min_length=1, max_length=EVENT_ID_LENGTH_MAX)]
AccountId = Annotated[str, Field(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX)]
KeyId = Annotated[str, Field(min_length=1, max_length=KEY_ID_LENGTH_MAX)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Classification(_Frozen):
    """How a gateway classified one request, and by which rule of which rules version."""

    kind: Literal["coding_tool", "unknown", "non_coding"]
    tool: str | None = None
    tool_version: str | None = None
    rule: Annotated[str, Field(min_length=1, max_length=200)]
    rules_version: Annotated[str, Field(min_length=1, max_length=100)]
    #: True when the traffic leaves no doubt (a bare HTTP client at a machine cadence):
    #: the policy may then suspend without waiting out the warning's grace period.
    unambiguous: bool = False


class PolicyViolation(_Frozen):
    """A request of a key that the gateway classified as non-coding use."""

    type: Literal["policy.violation"]
    event_id: EventId
    occurred_at: Instant
    account_id: AccountId
    key_id: KeyId
    #: The usage event id of the request (its idempotency key or gateway request id).
    request_event_id: EventId
    classification: Classification
    cluster: Literal["cn", "sgp", "ams"]
    protocol: Literal["openai", "anthropic"]
    client: Annotated[str, Field(max_length=CLIENT_LENGTH_MAX)] | None = None


class KeyReinstated(_Frozen):
    """An operator lifted a key's suspension (admin token required), with the reason."""

    type: Literal["key.reinstated"]
    event_id: EventId
    occurred_at: Instant
    account_id: AccountId
    key_id: KeyId
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


PolicyInput = Annotated[Union[PolicyViolation, KeyReinstated], Field(discriminator="type")]
POLICY_INPUT_ADAPTER: TypeAdapter[PolicyInput] = TypeAdapter(PolicyInput)


class PolicyFact(_Frozen):
    """policy.warning, key.suspended or key.reinstated, caused by one policy input."""

    type: Literal["policy.warning", "key.suspended", "key.reinstated"]
    event_id: str
    cause_event_id: str
    occurred_at: Instant
    account_id: str
    key_id: str
    #: non-coding requests of the key inside the window when the fact was decided.
    violations: int
    window_s: int
    #: The rules that matched those requests, with their counts, and the requests' event ids.
    rules: dict[str, int]
    request_event_ids: list[str]
    message: str


class KeyStatusRecord(_Frozen):
    """A key's policy state (compacted `tokenplan.key-status`, key = key_id)."""

    key_id: str
    account_id: str
    status: Literal["active", "suspended"]
    changed_at: Instant
    cause_event_id: str
    reason: str
