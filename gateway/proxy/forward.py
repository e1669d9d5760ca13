"""Forward one request upstream and stream the reply back, reading its usage on the way.

The reply reaches the client unchanged. One exception: an OpenAI chat stream whose
client did not ask for `stream_options.include_usage` is asked upstream with it (the
gateway must meter it), and the usage-only final chunk is then held back from the
client, so the client sees exactly the stream it asked for. When the client goes away
mid-stream, the upstream reply is still read to its end: the tokens were generated and
their usage is in the last events.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web

from gateway.proxy.routes import Route
from gateway.usage.counts import UsageCounts, UsageError
from gateway.usage.sse import SseDecoder

__all__ = ["Forwarded", "forward", "upstream_body"]

logger = logging.getLogger(__name__)

#: Request headers passed upstream as they are (the credential is the gateway's own).
PASSED_HEADERS = ("anthropic-version", "anthropic-beta", "accept", "user-agent")


@dataclass
class Forwarded:
    """What happened upstream: its status, and the usage or why there is none."""

    status: int
    usage: UsageCounts | None = None
    error: UsageError | None = None
    raw_usage: dict | None = None


def upstream_body(route: Route, body: dict) -> tuple[bytes, bool]:
    """The body sent upstream, and whether the usage chunk must be held back from the client."""
    if route.name == "chat" and body.get("stream") is True:
        options = body.get("stream_options") or {}
        if options.get("include_usage") is not True:
            return orjson.dumps({**body, "stream_options": {**options, "include_usage": True}}), True
    return orjson.dumps(body), False


def upstream_headers(route: Route, request: web.Request, upstream_key: str) -> dict[str, str]:
    headers = {name: request.headers[name] for name in PASSED_HEADERS if name in request.headers}
    headers["content-type"] = "application/json"
    if upstream_key:
        if route.protocol == "anthropic":
            headers["x-api-key"] = upstream_key
        else:
            headers["authorization"] = f"Bearer {upstream_key}"
    return headers


async def forward(session: aiohttp.ClientSession, upstream_url: str, upstream_key: str, route: Route,
                  request: web.Request, body: dict, extra_headers: dict[str, str]) -> tuple[web.StreamResponse, Forwarded]:
    """Send upstream, reply to the client, and return what the usage was."""
    data, hold_usage = upstream_body(route, body)
    async with session.post(upstream_url + route.upstream_path, data=data,
                            headers=upstream_headers(route, request, upstream_key)) as upstream:
        content_type = upstream.headers.get("content-type", "application/json")
        headers = {"content-type": content_type, **extra_headers}
        if upstream.status >= 300 or not content_type.startswith("text/event-stream"):
            raw = await upstream.read()
            reply = web.Response(status=upstream.status, body=raw, headers=headers)
            return reply, _whole_usage(route, upstream.status, raw)
        reply = web.StreamResponse(status=upstream.status, headers=headers)
        await reply.prepare(request)
        forwarded = await _stream(route, upstream, reply, hold_usage)
        return reply, forwarded


def _whole_usage(route: Route, status: int, raw: bytes) -> Forwarded:
    if status >= 300:
        return Forwarded(status)  # an upstream error served nothing: no usage, no charge
    try:
        return Forwarded(status, usage=route.whole(raw))
    except UsageError as error:
        return Forwarded(status, error=error, raw_usage=_raw_usage(raw))


async def _stream(route: Route, upstream: aiohttp.ClientResponse, reply: web.StreamResponse,
                  hold_usage: bool) -> Forwarded:
    decoder, usage = SseDecoder(), route.stream()
    client_gone = False
    last_usage: dict | None = None
    try:
        async for chunk in upstream.content.iter_any():
            out = bytearray() if hold_usage else chunk
            for event_name, data in decoder.feed(chunk):
                parsed = _feed(usage, data)
                if isinstance(parsed, dict) and parsed.get("usage"):
                    last_usage = parsed.get("usage")
                if hold_usage and not _is_usage_only(parsed):
                    out += (f"event: {event_name}\n" if event_name else "").encode() + f"data: {data}\n\n".encode()
            if out and not client_gone:
                try:
                    await reply.write(bytes(out))
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    client_gone = True
                    logger.info("client went away mid-stream; reading the upstream to its end for usage")
        if not client_gone:
            await reply.write_eof()
        return Forwarded(upstream.status, usage=usage.result())
    except UsageError as error:
        return Forwarded(upstream.status, error=error, raw_usage=last_usage)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
        cut = UsageError("upstream_stream_cut", f"the upstream stream broke: {type(error).__name__}")
        return Forwarded(upstream.status, error=cut, raw_usage=last_usage)


def _feed(usage, data: str) -> object:
    if data == "[DONE]":
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    usage.feed(parsed)
    return parsed


def _is_usage_only(parsed: object) -> bool:
    """OpenAI's include_usage chunk: no choices, a usage object."""
    return isinstance(parsed, dict) and parsed.get("choices") == [] and parsed.get("usage") is not None


def _raw_usage(raw: bytes) -> dict | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else None
