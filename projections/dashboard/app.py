"""The aiohttp application: routes, and the reads run off the event loop.

Every request opens one read connection in a worker thread (SQLAlchemy is blocking), so
a slow query never stalls other requests; the projector keeps writing meanwhile
(SQLite WAL, or PostgreSQL).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from projections.dashboard import pages, queries, views
from projections.dashboard.ops import SAMPLE_S, Highwaters, RateMeter, worker_consumed

__all__ = ["Dashboard", "build_app"]

T = TypeVar("T")
#: The projector's source topics (short names): the operator page lists them even before data.
SOURCE_TOPICS = ("balance-changed", "quota-exhausted", "quota-status", "rejected", "policy", "policy-facts")
DASHBOARD = web.AppKey("dashboard", object)
NOT_READY = ("the projection tables are not readable (has `tokenplan projector` run against this database?)")


@dataclass
class Dashboard:
    """What the handlers share: the database, where Kafka and the worker are, the samplers."""

    engine: Engine
    topic_prefix: str = "tokenplan."
    bootstrap: str | None = None
    worker_url: str | None = None
    now: Callable[[], datetime] = views.utc_now

    def __post_init__(self) -> None:
        self.meter = RateMeter()
        self.worker_meter = RateMeter()
        self.highwaters = Highwaters(self.bootstrap)
        self.worker: dict | None = None
        self.session: aiohttp.ClientSession | None = None

    async def read(self, function: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as connection:
                return function(connection)
        return await asyncio.to_thread(run)

    def topics(self, folded: dict[str, dict[int, int]]) -> list[str]:
        ours = [self.topic_prefix + name for name in SOURCE_TOPICS]
        return ours + sorted(topic for topic in folded if topic not in ours and topic.startswith(self.topic_prefix))

    async def sample(self, remote: bool = True) -> dict[str, dict[int, int]]:
        """One sample of the folded offsets; with `remote`, Kafka's high-water marks and the worker's too.

        Pages sample only the database (Kafka may take seconds to answer, or not at all)
        and wait only for the very first Kafka read; the background loop does the rest."""
        folded = await self.read(queries.offsets)
        self.meter.record({topic: sum(parts.values()) for topic, parts in folded.items()})
        if remote:
            await self.highwaters.refresh(self.topics(folded))
        else:
            await self.highwaters.first_read(self.topics(folded))
        if self.worker_url and (remote or self.worker is None):
            await self._sample_worker()
        return folded

    async def _sample_worker(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        consumed, error = await worker_consumed(self.session, self.worker_url or "")
        if consumed is not None:
            self.worker_meter.record(consumed)
        self.worker = {"url": self.worker_url, "error": error, "consumed": consumed or {},
                       "rates": {name: self.worker_meter.rate(name) for name in consumed or {}}}

    async def ops(self) -> dict:
        folded = await self.sample(remote=False)
        topics = self.topics(folded)
        kafka_ok = self.highwaters.error is None and self.highwaters.read_at is not None
        return {"topics": views.topic_rows(topics, folded, self.highwaters.values if kafka_ok else None,
                                           {topic: self.meter.rate(topic) for topic in topics}),
                "kafka": self.bootstrap if kafka_ok else self.highwaters.error, "worker": self.worker,
                "sample_s": SAMPLE_S, "span_s": self.meter.span_s}

    async def run_sampler(self, app: web.Application) -> Any:
        """Background samples, so records/s is known when someone opens the page."""
        async def loop() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await self.sample()
                await asyncio.sleep(SAMPLE_S)
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.session is not None:
            await self.session.close()


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(views.jsonable(body)), status=status, content_type="application/json")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/health"


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """400 for unusable parameters, 503 while the tables do not exist; JSON on the API, HTML on pages."""
    try:
        return await handler(request)
    except views.BadRequest as error:
        if _wants_json(request):
            return json_response({"error": "bad_request", "message": str(error)}, 400)
        return web.Response(text=pages.error_page(str(error)), status=400, content_type="text/html")
    except (OperationalError, ProgrammingError) as error:
        message = f"{NOT_READY}: {type(error.orig).__name__}"
        if _wants_json(request):
            return json_response({"error": "unavailable", "message": message}, 503)
        return web.Response(text=pages.error_page(message), status=503, content_type="text/html")


def _dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def _not_found(account_id: str) -> web.Response:
    return json_response({"error": "not_found", "message": f"unknown account {account_id!r}",
                          "account_id": account_id}, 404)


async def api_account(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    view = await _dashboard(request).read(lambda c: views.account_view(c, account_id))
    return _not_found(account_id) if view is None else json_response(view)


async def api_usage(request: web.Request) -> web.Response:
    dashboard, account_id = _dashboard(request), request.match_info["account_id"]
    query = views.parse_usage_query(request.query, dashboard.now())

    def read(connection: Connection):
        if not queries.account_exists(connection, account_id):
            return None
        return views.usage_rows(connection, account_id, query)
    rows = await dashboard.read(read)
    if rows is None:
        return _not_found(account_id)
    head = views.jsonable({"account_id": account_id, "bucket": query.bucket, "from": query.start, "to": query.end})
    return web.Response(body=orjson.dumps({**head, "rows": views.usage_json(rows)}), content_type="application/json")


async def api_forecast(request: web.Request) -> web.Response:
    dashboard, account_id = _dashboard(request), request.match_info["account_id"]
    now = dashboard.now()
    result = await dashboard.read(lambda c: views.forecast_view(c, account_id, now))
    return _not_found(account_id) if result is None else json_response(result)


async def api_policy(request: web.Request) -> web.Response:
    dashboard, account_id = _dashboard(request), request.match_info["account_id"]
    now = dashboard.now()
    result = await dashboard.read(lambda c: views.policy_view(c, account_id, now))
    return _not_found(account_id) if result is None else json_response(result)


async def api_fleet(request: web.Request) -> web.Response:
    dashboard = _dashboard(request)
    now = dashboard.now()
    fleet = await dashboard.read(lambda c: views.fleet_view(c, now))
    return json_response({**fleet, "topics": await dashboard.ops()})


async def health(request: web.Request) -> web.Response:
    dashboard = _dashboard(request)
    await dashboard.read(queries.offsets)  # raises (-> 503) while the tables are missing
    return json_response({"status": "ok", "database": dashboard.engine.url.render_as_string(hide_password=True)})


def _account_data(connection: Connection, account_id: str, query: views.UsageQuery, now: datetime) -> dict | None:
    view = views.account_view(connection, account_id)
    if view is None:
        return None
    status = view["status"] or {}
    return {"view": view, "forecast": views.forecast_view(connection, account_id, now, view),
            "usage": views.usage_rows(connection, account_id, query), "start": query.start, "end": query.end,
            "bucket": query.bucket, "totals": queries.totals(connection, account_id, status.get("valid_from")),
            "charges": queries.recent_charges(connection, account_id), "alerts": queries.recent_alerts(connection, account_id),
            "packages": queries.packages(connection, account_id), "quota": queries.quota_history(connection, account_id),
            "policy": views.policy_view(connection, account_id, now)}


def _footer(dashboard: Dashboard, now: datetime) -> str:
    url = dashboard.engine.url.render_as_string(hide_password=True)
    return f"read from {url} at {now:%Y-%m-%d %H:%M:%S} UTC · JSON: /api/…"


async def account_page(request: web.Request) -> web.Response:
    dashboard, account_id = _dashboard(request), request.match_info["account_id"]
    now = dashboard.now()
    query = views.parse_usage_query(request.query, now)
    data = await dashboard.read(lambda c: _account_data(c, account_id, query, now))
    if data is None:
        return web.Response(text=pages.not_found_page(account_id), status=404, content_type="text/html")
    data["footer"] = _footer(dashboard, now)
    return web.Response(text=pages.account_page(data), content_type="text/html")


async def account_search(request: web.Request) -> web.Response:
    account_id = request.query.get("id", "").strip()
    raise web.HTTPFound(f"/accounts/{quote(account_id, safe='')}" if account_id else "/")


async def operator_page(request: web.Request) -> web.Response:
    dashboard = _dashboard(request)
    now = dashboard.now()
    fleet = await dashboard.read(lambda c: views.fleet_view(c, now))
    html = pages.operator_page(fleet, await dashboard.ops(), _footer(dashboard, now))
    return web.Response(text=html, content_type="text/html")


def build_app(dashboard: Dashboard, sampler: bool = True) -> web.Application:
    """The routes; `sampler` runs the background throughput samples (off in unit tests)."""
    app = web.Application(middlewares=[errors])
    app[DASHBOARD] = dashboard
    app.router.add_get("/", operator_page)
    app.router.add_get("/accounts", account_search)
    app.router.add_get("/accounts/{account_id}", account_page)
    app.router.add_get("/api/accounts/{account_id}", api_account)
    app.router.add_get("/api/accounts/{account_id}/usage", api_usage)
    app.router.add_get("/api/accounts/{account_id}/forecast", api_forecast)
    app.router.add_get("/api/accounts/{account_id}/policy", api_policy)
    app.router.add_get("/api/fleet", api_fleet)
    app.router.add_get("/health", health)
    if sampler:
        app.cleanup_ctx.append(dashboard.run_sampler)
    return app
