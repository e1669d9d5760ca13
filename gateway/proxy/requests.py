"""What the gateway reads from a client request before forwarding it (pure)."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from gateway.proxy.routes import Route
from schemas.events import CLIENT_LENGTH_MAX, EVENT_ID_LENGTH_MAX

__all__ = ["BadRequest", "ClientRequest", "api_key", "read_request"]

#: Request headers that carry the client's idempotency key (the usage event's id).
IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key")


class BadRequest(ValueError):
    """A request the gateway cannot forward (not JSON, no model, a bad idempotency key)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ClientRequest:
    """The parsed request: model, stream flag, output limit, the event id and client."""

    body: dict
    model: str
    stream: bool
    max_tokens: int | None
    event_id: str
    client: str | None
    input_bytes: int


def api_key(headers: Mapping[str, str], route: Route) -> str | None:
    """The presented key: `Authorization: Bearer` (and `x-api-key` on Anthropic routes)."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    if route.protocol == "anthropic":
        return headers.get("x-api-key") or None
    return None


def read_request(raw: bytes, headers: Mapping[str, str], route: Route, cluster: str) -> ClientRequest:
    """Parse the JSON body and the headers the gateway needs; BadRequest when unusable."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the request body is not JSON: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("the request needs a 'model' string", param="model")
    max_tokens = next((body[f] for f in route.max_tokens_fields if isinstance(body.get(f), int)), None)
    return ClientRequest(body=body, model=body["model"], stream=body.get("stream") is True,
                         max_tokens=max_tokens, event_id=_event_id(headers, cluster),
                         client=(headers.get("user-agent") or None) and headers["user-agent"][:CLIENT_LENGTH_MAX],
                         input_bytes=len(raw))


def _event_id(headers: Mapping[str, str], cluster: str) -> str:
    """The client's idempotency key (so its retries are charged once), else a fresh request id."""
    for name in IDEMPOTENCY_HEADERS:
        value = headers.get(name)
        if value is not None:
            if not 1 <= len(value) <= EVENT_ID_LENGTH_MAX or not value.isprintable():
                raise BadRequest(f"the {name} header must be 1 to {EVENT_ID_LENGTH_MAX} printable characters")
            return value
    return f"gw-{cluster}-{uuid.uuid4().hex}"
