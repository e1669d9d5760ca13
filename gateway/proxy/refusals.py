"""Refusals in each protocol's own error shape, so the SDKs raise their own classes.

OpenAI: `{"error": {"message", "type", "param", "code"}}`; the SDK maps 401 to
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 429 RateLimitError,
503 InternalServerError. Anthropic: `{"type": "error", "error": {"type", "message"}}`
with authentication_error, permission_error, not_found_error, rate_limit_error, overloaded_error.
"""
from __future__ import annotations

from typing import Literal

from gateway.quota.cache import REFUSALS

__all__ = ["MESSAGES", "refusal_body", "error_body"]

Protocol = Literal["openai", "anthropic"]

UPGRADE = ("Buy a higher tier (an upgrade is charged the price difference) or a refresh, "
           "or wait for the next package period.")
#: reason -> the message a user reads in the SDK's exception.
MESSAGES: dict[str, str] = {
    "missing_key": "No API key: send 'Authorization: Bearer tp-...' (Anthropic routes also take 'x-api-key').",
    "unknown_key": "The API key is not valid: it is unknown to Token Plan. Check the key, or issue a new one.",
    "revoked_key": "The API key was revoked. Issue a new key with 'tokenplan keys issue'.",
    "suspended_key": ("The API key is suspended for a usage-policy violation (the plan serves programming "
                      "tools only). To appeal, contact support with the key id."),
    "no_package": "The account has no Token Plan package: API keys work only while a package is valid. Buy a plan.",
    "package_expired": "The account's Token Plan package has expired: API keys work only while a package is valid. "
                       "Renew or buy a plan.",
    "exhausted": f"The plan's credits are used up for this package period. {UPGRADE}",
    "in_flight_exceeds_remaining": ("The plan's remaining credits are already claimed by this account's requests "
                                    f"in flight; retry when they finish. {UPGRADE}"),
    "quota_unavailable": "The quota service cannot be reached right now; the request was not served. Retry shortly.",
    "usage_spool_full": "The gateway cannot record usage right now; the request was not served. Retry shortly.",
}

_OPENAI_TYPES = {"authentication": "invalid_request_error", "permission": "permission_error",
                 "rate_limit": "insufficient_quota", "unavailable": "service_unavailable",
                 "not_found": "invalid_request_error", "invalid": "invalid_request_error"}
_ANTHROPIC_TYPES = {"authentication": "authentication_error", "permission": "permission_error",
                    "rate_limit": "rate_limit_error", "unavailable": "overloaded_error",
                    "not_found": "not_found_error", "invalid": "invalid_request_error"}


def error_body(protocol: Protocol, kind: str, code: str, message: str, param: str | None = None) -> dict:
    """One error body in the protocol's shape."""
    if protocol == "openai":
        return {"error": {"message": message, "type": _OPENAI_TYPES[kind], "param": param, "code": code}}
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES[kind], "message": message}}


def refusal_body(protocol: Protocol, reason: str) -> tuple[int, dict]:
    """HTTP status and body for a refusal reason (REFUSALS, or missing_key)."""
    status, kind = REFUSALS.get(reason, (401, "authentication"))
    return status, error_body(protocol, kind, reason, MESSAGES[reason])
