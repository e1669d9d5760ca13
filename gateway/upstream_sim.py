"""A fake OpenAI and Anthropic model server (`tokenplan upstream-sim`) for local runs and tests.

The gateway meters what upstreams report, so the simulator's job is to report usage the
way the real providers do (field names, streaming order, cache hits) while staying
deterministic: the same request gets the same reply text and token counts, so tests can
assert exact numbers without a network or an API key. Routes:
`POST /v1/chat/completions`, `POST /v1/responses`, `POST /v1/messages`, `GET /v1/models`.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import itertools
import math
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

#: How many prompt-prefix hashes the cache remembers (least recently used go first).
CACHE_LIMIT = 10_000
#: The tokenizer estimate: one token per this many UTF-8 bytes, rounded up...
BYTES_PER_TOKEN = 4
#: ...plus this many per message (role and separators, as real chat templates add).
MESSAGE_OVERHEAD_TOKENS = 4
#: OpenAI's output cap when the request names none.
DEFAULT_MAX_TOKENS = 256
#: The natural reply length, before max_tokens, is drawn from this range by prompt hash.
REPLY_TOKENS_MIN, REPLY_TOKENS_MAX = 20, 200
#: Anthropic writes a marked prefix to its cache only from this size (its documented minimum).
ANTHROPIC_MIN_CACHEABLE_TOKENS = 1024
#: The filler vocabulary; one word is one output token.
FILLER_WORDS = ("token", "plan", "quota", "ledger", "meter", "credit", "usage", "model",
                "stream", "cache", "prompt", "reply", "budget", "window", "limit", "renew")

Json = dict[str, Any]


@dataclass(frozen=True)
class SimConfig:
    """How the simulated upstream behaves; the defaults answer at once and never fail."""

    latency_ms: int = 0
    """Delay before the first byte of every reply."""
    tokens_per_s: float = 0
    """Streaming pace; 0 sends all chunks at once."""
    fail_every: int = 0
    """Answer every Nth model request with a 500 (0 = never), to exercise gateway retries."""
    cache_limit: int = CACHE_LIMIT
    models: frozenset[str] | None = None
    """Served model names; None = the latest catalog version's models and free models."""


def catalog_models() -> frozenset[str]:
    """The plan's model names: the gateway must accept exactly what the ledger can price."""
    catalog = orjson.loads(importlib.resources.files("schemas").joinpath("catalog.json").read_bytes())
    latest = max(catalog["versions"], key=lambda version: version["effective_from"])
    return frozenset([m["name"] for m in latest["models"]] + list(latest.get("free_models", [])))


# --- the prompt: segments, token estimate, prefix hashes ------------------------------------


@dataclass(frozen=True)
class Segment:
    """One cacheable unit of a prompt (tools, a system prompt or a message)."""

    key: bytes
    tokens: int
    marked: bool = False


@dataclass(frozen=True)
class Prompt:
    """A prompt as segments, with the hash of every prefix (the cache's keys).

    The scope (provider and model) starts the hash chain: like a real prompt cache, a
    prefix cached for one model is no hit for another, nor across providers.
    """

    scope: bytes
    segments: tuple[Segment, ...]
    digests: tuple[bytes, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digests", prefix_digests((s.key for s in self.segments), self.scope))

    def tokens(self, upto: int | None = None) -> int:
        """Tokens of the first `upto` segments (all by default)."""
        return sum(s.tokens for s in self.segments[:upto])

    def marked_upto(self) -> int:
        """How many leading segments end at the last cache_control mark (0 when unmarked)."""
        return max((i + 1 for i, s in enumerate(self.segments) if s.marked), default=0)

    def seed(self) -> int:
        """The reply's seed: the same provider, model and prompt always get the same reply."""
        last = self.digests[-1] if self.digests else self.scope
        return int.from_bytes(hashlib.sha256(last).digest()[:8], "big")


def prefix_digests(keys: Iterable[bytes], scope: bytes = b"") -> tuple[bytes, ...]:
    """Chained hashes, so prefix k's digest depends on the scope and segments 1..k only."""
    digests, previous = [], scope
    for key in keys:
        previous = hashlib.sha256(previous + key).digest()
        digests.append(previous)
    return tuple(digests)


def strip_cache_control(value: Any) -> Any:
    """The value without cache_control marks: moving a mark must not change what is cached."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


def has_cache_control(value: Any) -> bool:
    """Whether an Anthropic cache_control mark sits anywhere in the value."""
    if isinstance(value, dict):
        return "cache_control" in value or any(has_cache_control(v) for v in value.values())
    return isinstance(value, list) and any(has_cache_control(v) for v in value)


def text_of(content: Any) -> str:
    """The text a tokenizer would see: strings as they are, text blocks' text, other parts as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(part) for part in content)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return orjson.dumps(strip_cache_control(content), option=orjson.OPT_SORT_KEYS).decode()


def segment(value: Any) -> Segment:
    """A message (or system prompt, or tool list) as a segment; messages count their content."""
    text = text_of(value.get("content")) if isinstance(value, dict) and "content" in value else text_of(value)
    tokens = math.ceil(len(text.encode()) / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
    key = orjson.dumps(strip_cache_control(value), option=orjson.OPT_SORT_KEYS)
    return Segment(key, tokens, has_cache_control(value))


def build_prompt(scope: str, *parts: Any, messages: Any) -> Prompt:
    """The prompt from leading parts (tools, system) that are present, then the messages."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list):
        raise BadRequest("messages: expected a list")
    values = [p for p in parts if p not in (None, "", [])] + messages
    return Prompt(scope.encode(), tuple(segment(v) for v in values))


# --- the cache and the usage it implies --------------------------------------------------


class PrefixCache:
    """The prompt prefixes seen lately, bounded LRU, like a provider's prompt cache."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.limit = limit
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def longest_seen(self, digests: tuple[bytes, ...]) -> int:
        """How many leading segments form the longest prefix seen before."""
        for k in range(len(digests), 0, -1):
            if digests[k - 1] in self._seen:
                self._seen.move_to_end(digests[k - 1])
                return k
        return 0

    def remember(self, digests: tuple[bytes, ...]) -> None:
        """Record every prefix of a prompt, evicting the least recently used beyond the limit."""
        for digest in digests:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)


@dataclass(frozen=True)
class PromptUsage:
    """Prompt tokens split as providers bill them: total, read from cache, written to cache."""

    total: int
    cached: int = 0
    written: int = 0


def openai_prompt_usage(prompt: Prompt, cache: PrefixCache) -> PromptUsage:
    """OpenAI caches automatically: any prefix seen before is reported as cached_tokens."""
    cached = prompt.tokens(cache.longest_seen(prompt.digests))
    cache.remember(prompt.digests)
    return PromptUsage(prompt.tokens(), cached)


def anthropic_prompt_usage(prompt: Prompt, cache: PrefixCache, marked_all: bool) -> PromptUsage:
    """Anthropic reads seen prefixes and writes a new marked prefix when it is long enough."""
    read_upto = cache.longest_seen(prompt.digests)
    marked_upto = len(prompt.segments) if marked_all else prompt.marked_upto()
    cached = prompt.tokens(read_upto)
    written = 0
    if marked_upto > read_upto and prompt.tokens(marked_upto) >= ANTHROPIC_MIN_CACHEABLE_TOKENS:
        written = prompt.tokens(marked_upto) - cached
    cache.remember(prompt.digests)
    return PromptUsage(prompt.tokens(), cached, written)


@dataclass(frozen=True)
class Reply:
    """The deterministic reply: one filler word per output token."""

    words: tuple[str, ...]
    clipped: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces())

    def pieces(self) -> list[str]:
        """The words as streamed: a space before every word but the first."""
        return [w if i == 0 else f" {w}" for i, w in enumerate(self.words)]


def make_reply(seed: int, max_tokens: int) -> Reply:
    """A natural length from the seed, clipped to max_tokens (as `length`/`max_tokens` stops)."""
    rng = random.Random(seed)
    natural = rng.randint(REPLY_TOKENS_MIN, REPLY_TOKENS_MAX)
    count = min(natural, max_tokens)
    return Reply(tuple(rng.choice(FILLER_WORDS) for _ in range(count)), natural > max_tokens)


# --- errors -------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the real provider would reject with 400 invalid_request_error."""


class UnknownModel(Exception):
    """A model outside the catalog: the provider's 404."""


ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    """OpenAI's error body: {"error": {message, type, param, code}}."""
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, dumps=_dumps)


def anthropic_error(status: int, message: str) -> web.Response:
    """Anthropic's error body: {"type": "error", "error": {type, message}}."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status, dumps=_dumps)


def provider_error(request: web.Request, status: int, message: str) -> web.Response:
    """The error in the shape of the provider whose route was called."""
    if request.path.startswith("/v1/messages"):
        return anthropic_error(status, message)
    return openai_error(status, message)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- the simulator's state ----------------------------------------------------------------


class Upstream:
    """Per-app state: the config, the served models, the prompt cache and request counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.models = config.models if config.models is not None else catalog_models()
        self.cache = PrefixCache(config.cache_limit)
        self._ids = itertools.count(1)
        self._requests = itertools.count(1)

    def new_id(self, prefix: str, seed: int) -> str:
        """Unique per reply (a gateway may key usage by it), yet reproducible in request order."""
        return f"{prefix}{next(self._ids):06d}{seed:016x}"

    def should_fail(self) -> bool:
        """Whether this model request is the Nth that --fail-every turns into a 500."""
        every = self.config.fail_every
        return every > 0 and next(self._requests) % every == 0

    def check_model(self, body: Json) -> str:
        """The requested model, if served; otherwise the provider's 400 or 404."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: a model name is required")
        if model not in self.models:
            raise UnknownModel(model)
        return model


UPSTREAM = web.AppKey("upstream", Upstream)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def read_json(request: web.Request) -> Json:
    """The request body as a JSON object, or BadRequest."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def int_field(body: Json, *names: str, default: int | None = None) -> int:
    """The first present positive integer field among names, else default (None = required)."""
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadRequest(f"{name}: expected a positive integer")
            return value
    if default is None:
        raise BadRequest(f"{names[0]}: Field required")
    return default


async def pace(pieces: list[str], tokens_per_s: float) -> AsyncIterator[str]:
    """Yield the pieces on a schedule of tokens_per_s (no delay when 0), like a model decoding."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, piece in enumerate(pieces):
        if tokens_per_s > 0 and i > 0:
            await asyncio.sleep(max(0.0, start + i / tokens_per_s - loop.time()))
        yield piece


async def open_sse(request: web.Request) -> web.StreamResponse:
    """Start an event stream: headers go out now, chunks follow as they are written."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


# --- OpenAI ---------------------------------------------------------------------------------


def chat_usage(prompt: PromptUsage, completion: int) -> Json:
    return {"prompt_tokens": prompt.total, "completion_tokens": completion,
            "total_tokens": prompt.total + completion,
            "prompt_tokens_details": {"cached_tokens": prompt.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, streamed (SSE) when the body says "stream": true."""
    upstream, body = request.app[UPSTREAM], await read_json(request)
    model = upstream.check_model(body)
    prompt = build_prompt(f"openai/{model}", body.get("tools"), messages=body.get("messages"))
    max_tokens = int_field(body, "max_completion_tokens", "max_tokens", default=DEFAULT_MAX_TOKENS)
    seed = prompt.seed()
    reply, usage = make_reply(seed, max_tokens), openai_prompt_usage(prompt, upstream.cache)
    head = {"id": upstream.new_id("chatcmpl-", seed), "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_upstream_sim", "service_tier": "default"}
    finish = "length" if reply.clipped else "stop"
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await stream_chat(request, head, reply, chat_usage(usage, len(reply.words)) if include_usage else None)
    message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    return web.json_response({**head, "object": "chat.completion", "usage": chat_usage(usage, len(reply.words)),
                              "choices": [{"index": 0, "message": message, "logprobs": None,
                                           "finish_reason": finish}]}, dumps=_dumps)


async def stream_chat(request: web.Request, head: Json, reply: Reply, usage: Json | None) -> web.StreamResponse:
    """OpenAI's chunk order: role, content pieces, finish_reason, [usage with choices: []], [DONE]."""
    response = await open_sse(request)
    extra = {"usage": None} if usage is not None else {}

    async def send(choices: list[Json], **fields: Any) -> None:
        chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra, **fields}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def choice(delta: Json, finish: str | None = None) -> list[Json]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    await send(choice({"role": "assistant", "content": "", "refusal": None}))
    async for piece in pace(reply.pieces(), request.app[UPSTREAM].config.tokens_per_s):
        await send(choice({"content": piece}))
    await send(choice({}, "length" if reply.clipped else "stop"))
    if usage is not None:
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def responses(request: web.Request) -> web.Response:
    """POST /v1/responses (non-streaming): the Responses API's output and usage."""
    upstream, body = request.app[UPSTREAM], await read_json(request)
    model = upstream.check_model(body)
    if body.get("stream"):
        raise BadRequest("stream: the simulator serves /v1/responses without streaming")
    prompt = build_prompt(f"openai/{model}", body.get("tools"), body.get("instructions"),
                          messages=body.get("input"))
    seed = prompt.seed()
    reply = make_reply(seed, int_field(body, "max_output_tokens", default=DEFAULT_MAX_TOKENS))
    usage, status = openai_prompt_usage(prompt, upstream.cache), "incomplete" if reply.clipped else "completed"
    output = {"id": upstream.new_id("msg_", seed), "type": "message", "role": "assistant", "status": status,
              "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}]}
    now = int(time.time())
    return web.json_response({
        "id": upstream.new_id("resp_", seed), "object": "response", "created_at": now,
        "completed_at": None if reply.clipped else now, "status": status, "model": model,
        "incomplete_details": {"reason": "max_output_tokens"} if reply.clipped else None, "error": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "output": [output], "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools") or [],
        "usage": {"input_tokens": usage.total,
                  "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": 0},
                  "output_tokens": len(reply.words), "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": usage.total + len(reply.words)},
    }, dumps=_dumps)


# --- Anthropic ------------------------------------------------------------------------------


def anthropic_usage(prompt: PromptUsage, output_tokens: int) -> Json:
    """input_tokens excludes what was read from or written to the cache, as Anthropic bills it."""
    return {"input_tokens": prompt.total - prompt.cached - prompt.written,
            "cache_creation_input_tokens": prompt.written, "cache_read_input_tokens": prompt.cached,
            "output_tokens": output_tokens, "service_tier": "standard"}


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages, streamed as Anthropic's named SSE events when "stream": true."""
    upstream, body = request.app[UPSTREAM], await read_json(request)
    model = upstream.check_model(body)
    max_tokens = int_field(body, "max_tokens")
    prompt = build_prompt(f"anthropic/{model}", body.get("tools"), body.get("system"),
                          messages=body.get("messages"))
    seed = prompt.seed()
    reply = make_reply(seed, max_tokens)
    usage = anthropic_prompt_usage(prompt, upstream.cache, bool(body.get("cache_control")))
    message = {"id": upstream.new_id("msg_", seed), "type": "message", "role": "assistant", "model": model,
               "content": [{"type": "text", "text": reply.text}], "stop_sequence": None,
               "stop_reason": "max_tokens" if reply.clipped else "end_turn",
               "usage": anthropic_usage(usage, len(reply.words))}
    if body.get("stream"):
        return await stream_messages(request, message, reply, usage)
    return web.json_response(message, dumps=_dumps)


async def stream_messages(request: web.Request, message: Json, reply: Reply, usage: PromptUsage) -> web.StreamResponse:
    """Anthropic's event order; message_delta carries the cumulative output_tokens."""
    response = await open_sse(request)

    async def send(event: str, data: Json) -> None:
        await response.write(f"event: {event}\ndata: ".encode() + orjson.dumps({"type": event, **data}) + b"\n\n")

    start = {**message, "content": [], "stop_reason": None, "usage": anthropic_usage(usage, 1)}
    await send("message_start", {"message": start})
    await send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    await send("ping", {})
    async for piece in pace(reply.pieces(), request.app[UPSTREAM].config.tokens_per_s):
        await send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
    await send("content_block_stop", {"index": 0})
    await send("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                 "usage": {"output_tokens": len(reply.words)}})
    await send("message_stop", {})
    await response.write_eof()
    return response


# --- models and the app ---------------------------------------------------------------------

#: A fixed creation time for the listed models (2026-01-01T00:00:00Z): listing is deterministic.
MODELS_CREATED = 1767225600


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: OpenAI's list shape, or Anthropic's when the anthropic-version header is sent."""
    names = sorted(request.app[UPSTREAM].models)
    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": n, "display_name": n, "created_at": "2026-01-01T00:00:00Z"} for n in names]
        return web.json_response({"data": data, "has_more": False, "first_id": names[0] if names else None,
                                  "last_id": names[-1] if names else None}, dumps=_dumps)
    data = [{"id": n, "object": "model", "created": MODELS_CREATED, "owned_by": "tokenplan"} for n in names]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


def forced_failure(request: web.Request, upstream: Upstream) -> int | None:
    """The status a test asked for (x-sim-fail header) or --fail-every imposes, if any."""
    asked = request.headers.get("x-sim-fail", "").strip()
    if asked.isdigit() and 400 <= int(asked) <= 599:
        return int(asked)
    if request.method == "POST" and upstream.should_fail():
        return 500
    return None


@web.middleware
async def simulate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency before the first byte, forced failures, and errors in the provider's shape."""
    upstream = request.app[UPSTREAM]
    if upstream.config.latency_ms > 0:
        await asyncio.sleep(upstream.config.latency_ms / 1000)
    status = forced_failure(request, upstream)
    if status is not None:
        return provider_error(request, status, f"upstream-sim: forced failure ({status})")
    try:
        return await handler(request)
    except BadRequest as error:
        return provider_error(request, 400, str(error))
    except UnknownModel as error:
        return unknown_model(request, str(error))


def unknown_model(request: web.Request, model: str) -> web.Response:
    """The provider's own 404, so the SDKs raise NotFoundError as they would upstream."""
    if request.path.startswith("/v1/messages"):
        return anthropic_error(404, f"model: {model}")
    return openai_error(404, f"The model `{model}` does not exist or you do not have access to it.",
                        param="model", code="model_not_found")


def build_app(config: SimConfig | None = None) -> web.Application:
    """The simulator as an aiohttp app; each app has its own prompt cache and counters."""
    app = web.Application(middlewares=[simulate])
    app[UPSTREAM] = Upstream(config or SimConfig())
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", list_models)
    return app
