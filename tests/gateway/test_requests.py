"""What the gateway reads from a request, and the refusal bodies each SDK understands."""
from __future__ import annotations

import pytest

from gateway.proxy.forward import upstream_body
from gateway.proxy.refusals import MESSAGES, refusal_body
from gateway.proxy.requests import BadRequest, api_key, read_request
from gateway.proxy.routes import ROUTES
from gateway.quota.cache import REFUSALS

CHAT, RESPONSES, MESSAGES_ROUTE = ROUTES


def test_the_idempotency_key_is_the_event_id_else_a_request_id():
    body = b'{"model": "MiMo-V2.5", "max_tokens": 64, "stream": true}'
    parsed = read_request(body, {"idempotency-key": "retry-7", "user-agent": "opencode/1"}, CHAT, "sgp")
    assert (parsed.event_id, parsed.max_tokens, parsed.stream, parsed.client) == ("retry-7", 64, True, "opencode/1")
    fresh = read_request(body, {}, CHAT, "cn")
    assert fresh.event_id.startswith("gw-cn-") and fresh.client is None
    assert read_request(b'{"model": "m", "max_completion_tokens": 9, "max_tokens": 5}', {}, CHAT, "cn").max_tokens == 9


@pytest.mark.parametrize(("raw", "headers"), [
    (b"not json", {}), (b"[]", {}), (b'{"model": ""}', {}),
    (b'{"model": "m"}', {"idempotency-key": "x" * 129}),
])
def test_unusable_requests_are_refused_as_bad_requests(raw, headers):
    with pytest.raises(BadRequest):
        read_request(raw, headers, CHAT, "sgp")


def test_keys_come_from_bearer_and_on_anthropic_routes_from_x_api_key():
    assert api_key({"authorization": "Bearer tp-abc"}, CHAT) == "tp-abc"
    assert api_key({"x-api-key": "tp-abc"}, CHAT) is None
    assert api_key({"x-api-key": "tp-abc"}, MESSAGES_ROUTE) == "tp-abc"


def test_a_stream_without_include_usage_is_asked_upstream_with_it():
    sent, hold = upstream_body(CHAT, {"model": "m", "stream": True})
    assert hold and b'"include_usage":true' in sent
    sent, hold = upstream_body(CHAT, {"model": "m", "stream": True, "stream_options": {"include_usage": True}})
    assert not hold
    assert upstream_body(MESSAGES_ROUTE, {"model": "m", "stream": True})[1] is False


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_every_refusal_has_a_message_and_both_protocol_shapes(reason):
    status, body = refusal_body("openai", reason)
    assert body["error"]["message"] == MESSAGES[reason] and body["error"]["code"] == reason
    status_a, body_a = refusal_body("anthropic", reason)
    assert status == status_a and body_a["type"] == "error" and body_a["error"]["message"] == MESSAGES[reason]
    assert "tp-" not in MESSAGES[reason].replace("tp-...", "")
