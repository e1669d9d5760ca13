"""The reference gateway: admit from the local cache, forward, meter, publish.

Per request: the key is hashed and looked up in the QuotaCache (memory, no I/O); an
account the cache has not seen yet is asked of the worker's lookup. A refusal gets the
protocol's own error. An admitted request reserves its estimated credits, is
forwarded, and after the reply one usage event (or, when the reply's usage cannot be
read, one `request.unmetered` record) is published keyed by account.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.catalog import PlanModels
from gateway.config import GatewaySettings
from gateway.keys.secrets import hash_key, looks_like_key
from gateway.policy.cadence import CadenceTracker
from gateway.policy.classify import Classification, PolicyRules, classify
from gateway.proxy.forward import Forwarded, forward
from gateway.proxy.metrics import GatewayMetrics
from gateway.proxy.publisher import Publisher
from gateway.proxy.refusals import error_body, refusal_body
from gateway.proxy.requests import BadRequest, ClientRequest, api_key, read_request
from gateway.proxy.routes import ROUTES, Route
from gateway.proxy.spool import SpoolFull
from gateway.quota.cache import Decision, QuotaCache
from gateway.quota.follower import CacheFollower
from gateway.quota.lookup import WorkerLookup
from schemas.events import Usage, format_instant
from schemas.gateway import UnmeteredRequest
from schemas.policy import Classification as PolicyClassification
from schemas.policy import PolicyViolation
from schemas.topics import POLICY, UNMETERED, USAGE

__all__ = ["Gateway", "EVENT_ID_HEADER"]

logger = logging.getLogger(__name__)

#: Request headers never passed to the classification rules.
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})
#: Response header naming the usage event of the request (its id, for support and tests).
EVENT_ID_HEADER = "tokenplan-event-id"


@dataclass
class Gateway:
    """Everything one gateway process holds; `build_app` hangs the routes on it."""

    settings: GatewaySettings
    secret: bytes
    plan: PlanModels
    cache: QuotaCache
    follower: CacheFollower
    publisher: Publisher
    metrics: GatewayMetrics
    rules: PolicyRules | None = None
    cadence: CadenceTracker | None = None
    upstream: aiohttp.ClientSession | None = None
    lookup: WorkerLookup | None = None

    # ------------------------------------------------------------------ admission
    async def admit(self, key: str | None, account_estimate: Decimal) -> Decision | str:
        """The cache's decision (with the worker's lookup on a miss), or "missing_key"."""
        if key is None:
            return "missing_key"
        key_hash = hash_key(self.secret, key) if looks_like_key(key) else ""
        began = time.perf_counter()
        decision = self.cache.decide(key_hash, account_estimate, time.time() * 1000, time.monotonic())
        self.metrics.decision_seconds.observe(time.perf_counter() - began)
        if decision.reason != "status_miss":
            return decision
        status = await self.lookup.status(decision.key.account_id)
        self.metrics.lookups.labels("answered" if status is not None else "failed").inc()
        if status is None:
            return Decision(False, "quota_unavailable", decision.key, None, decision.cache_age_ms)
        return self.cache.decide_status(decision.key, status, account_estimate, decision.cache_age_ms,
                                        time.monotonic())

    def estimate(self, model: str, request: ClientRequest) -> Decimal:
        """Upper estimate of the request's credits: body bytes / 4 as input, max_tokens as output."""
        output = request.max_tokens if request.max_tokens is not None else self.settings.default_max_tokens
        return self.plan.estimate(model, request.input_bytes // 4 + 1, output)

    # ------------------------------------------------------------------ handling
    async def handle(self, route: Route, request: web.Request) -> web.StreamResponse:
        arrived = datetime.now(timezone.utc)
        try:
            parsed = read_request(await request.read(), request.headers, route, self.settings.cluster)
        except BadRequest as error:
            return self._error(route, 400, "invalid", "invalid_request", str(error), error.param)
        model = self.plan.canonical(parsed.model)
        if model is None:
            message = f"The model {parsed.model!r} is not in the plan; GET /v1/models lists the plan's models."
            return self._error(route, 404, "not_found", "model_not_found", message, "model")
        estimate = self.estimate(model, parsed)
        decision = await self.admit(api_key(request.headers, route), estimate)
        if isinstance(decision, str) or not decision.allowed:
            return self._refuse(route, decision if isinstance(decision, str) else decision.reason, decision)
        if self.publisher.spool.full():
            return self._refuse(route, "usage_spool_full", decision)
        classification = self.classify(request, parsed, decision)
        reply = await self._serve(route, request, parsed, model, decision, estimate, arrived)
        if classification.kind == "non_coding":
            await self._violation(route, parsed, decision, classification, arrived)
        return reply

    def classify(self, request: web.Request, parsed: ClientRequest, decision: Decision) -> Classification:
        """The usage-policy class of an admitted request (credentials are not shown to the rules)."""
        headers = {name.lower(): value for name, value in request.headers.items()
                   if name.lower() not in CREDENTIAL_HEADERS}
        cadence = self.cadence.observe(decision.key.key_id, time.monotonic())
        classification = classify(headers, parsed.body, cadence, self.rules)
        self.metrics.classifications.labels(classification.kind).inc()
        return classification

    async def _violation(self, route: Route, parsed: ClientRequest, decision: Decision,
                         classification: Classification, arrived: datetime) -> None:
        """A non-coding request: one policy.violation for the worker's policy fold."""
        violation = PolicyViolation(
            type="policy.violation", event_id=f"{parsed.event_id}:violation", occurred_at=arrived,
            account_id=decision.key.account_id, key_id=decision.key.key_id, request_event_id=parsed.event_id,
            classification=PolicyClassification(**asdict(classification)), cluster=self.settings.cluster,
            protocol=route.protocol, client=parsed.client)
        await self._publish(POLICY, decision.key.account_id, violation.model_dump_json().encode())

    async def _serve(self, route: Route, request: web.Request, parsed: ClientRequest, model: str,
                     decision: Decision, estimate: Decimal, arrived: datetime) -> web.StreamResponse:
        account_id = decision.key.account_id
        self.cache.spend.reserve(account_id, parsed.event_id, estimate)
        headers = {EVENT_ID_HEADER: parsed.event_id}
        began = time.perf_counter()
        try:
            reply, forwarded = await forward(self.upstream, self.settings.upstream_url, self.settings.upstream_key,
                                             route, request, parsed.body, headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            self.cache.spend.settle(account_id, parsed.event_id, None, Decimal(0), time.monotonic())
            logger.warning("upstream %s unreachable: %s", self.settings.upstream_url, type(error).__name__)
            return self._error(route, 502, "unavailable", "upstream_unavailable",
                               "The model server did not answer; the request was not served.")
        self.metrics.upstream_seconds.observe(time.perf_counter() - began)
        sent = await self._meter(route, parsed, model, decision, forwarded, arrived)
        credits = (self.plan.cost(model, **_counts(forwarded)) if forwarded.usage is not None else Decimal(0))
        self.cache.spend.settle(account_id, parsed.event_id, sent, credits, time.monotonic())
        self.metrics.requests.labels(route.name, "served" if forwarded.status < 300 else "upstream_error").inc()
        return reply

    async def _meter(self, route: Route, parsed: ClientRequest, model: str, decision: Decision,
                     forwarded: Forwarded, arrived: datetime) -> tuple[int, int] | None:
        """Publish the usage event, or the unmetered record; the usage record's position."""
        if forwarded.status >= 300:
            return None
        common = {"event_id": parsed.event_id, "occurred_at": format_instant(arrived),
                  "account_id": decision.key.account_id, "model": model, "key_id": decision.key.key_id,
                  "cluster": self.settings.cluster, "protocol": route.protocol, "client": parsed.client}
        if forwarded.usage is None:
            error = forwarded.error
            self.metrics.usage_errors.labels(error.reason).inc()
            logger.error("unmetered request %s (key %s): %s", parsed.event_id, decision.key.key_id, error)
            record = UnmeteredRequest(**common, reason=error.reason, detail=str(error), usage=forwarded.raw_usage,
                                      upstream_status=forwarded.status)
            return await self._publish(UNMETERED, decision.key.account_id, record.model_dump_json().encode())
        event = Usage.model_validate({"type": "usage", **common, **forwarded.usage.as_event_fields()})
        return await self._publish(USAGE, decision.key.account_id, event.model_dump_json(exclude_none=True).encode())

    async def _publish(self, short_topic: str, account_id: str, value: bytes) -> tuple[int, int] | None:
        try:
            position = await self.publisher.publish(self.settings.topic(short_topic), account_id.encode(), value)
        except SpoolFull as error:
            # Served but neither sent nor spooled: the one loss the bound allows; logged loudly
            # (new requests are refused from now on, so it cannot grow).
            logger.error("usage record lost, the spool is full: %s", error)
            self.metrics.usage_events.labels("lost").inc()
            return None
        self.metrics.usage_events.labels("sent" if position is not None else "spooled").inc()
        self.metrics.spool_bytes.set(self.publisher.spool.size())
        return position

    # ------------------------------------------------------------------ replies
    def _refuse(self, route: Route, reason: str, decision: Decision | str) -> web.Response:
        self.metrics.refusals.labels(reason).inc()
        self.metrics.requests.labels(route.name, "refused").inc()
        key_id = decision.key.key_id if isinstance(decision, Decision) and decision.key else None
        logger.info("refused (%s) key_id=%s", reason, key_id)
        status, body = refusal_body(route.protocol, reason)
        headers = {}
        if isinstance(decision, Decision) and decision.cache_age_ms is not None:
            headers["tokenplan-cache-age-ms"] = f"{decision.cache_age_ms:.0f}"
        if isinstance(decision, Decision) and decision.status_as_of:
            headers["tokenplan-status-as-of"] = decision.status_as_of
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)

    def _error(self, route: Route, status: int, kind: str, code: str, message: str,
               param: str | None = None) -> web.Response:
        self.metrics.requests.labels(route.name, f"error_{status}").inc()
        body = error_body(route.protocol, kind, code, message, param)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    # ------------------------------------------------------------------ other pages
    async def models(self, request: web.Request) -> web.Response:
        """GET /v1/models: the plan's models (any active key may list them)."""
        decision = await self.admit(api_key(request.headers, ROUTES[0]), Decimal(0))
        if isinstance(decision, str) or decision.reason in ("unknown_key", "revoked_key", "suspended_key"):
            return self._refuse(ROUTES[0], decision if isinstance(decision, str) else decision.reason, decision)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "token-plan"} for name in self.plan.names]
        return web.json_response({"object": "list", "data": data}, dumps=lambda v: orjson.dumps(v).decode())

    async def health(self, request: web.Request) -> web.Response:
        """200 once the cache caught up and is fresh; 503 before, or when it is stale."""
        age = self.cache.age_ms(time.time() * 1000)
        fresh = self.follower.ready.is_set() and age is not None and age <= self.settings.stale_after_ms
        body = {"status": "running" if fresh else ("starting" if not self.follower.ready.is_set() else "stale"),
                "cluster": self.settings.cluster, "cache_age_ms": age, "keys": len(self.cache.keys),
                "accounts": len(self.cache.statuses), "spool_bytes": self.publisher.spool.size(),
                "stale_policy": self.settings.stale_policy}
        return web.json_response(body, status=200 if fresh else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.metrics.spool_bytes.set(self.publisher.spool.size())
        age = self.cache.age_ms(time.time() * 1000)
        self.metrics.cache_age_seconds.set(age / 1000 if age is not None else float("nan"))
        return web.Response(body=generate_latest(self.metrics.registry), headers={"content-type": CONTENT_TYPE_LATEST})

    def routes(self) -> list[web.RouteDef]:
        defs = [web.post(route.path, _bind(self, route)) for route in ROUTES]
        return defs + [web.get("/v1/models", self.models), web.get("/health", self.health),
                       web.get("/metrics", self.metrics_page)]


def _bind(gateway: Gateway, route: Route):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await gateway.handle(route, request)
    return handler


def _counts(forwarded: Forwarded) -> dict[str, int]:
    usage = forwarded.usage
    return {"hit": usage.input_cache_hit_tokens, "miss": usage.input_cache_miss_tokens, "output": usage.output_tokens}
