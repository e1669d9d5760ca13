"""HTTP views of the worker: health, the gateway's account lookup, the admin refresh and reinstatement.

faust's web server answers before table recovery has finished, so every view that
reads state says 503 while the worker is recovering or rebalancing. The decisions are
plain functions (`worker_status`, `admin_refusal`, `refresh_event`, `lookup_body`),
tested in process; `register` hangs the views on the app.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from faust.web import Request, Response, View
from faust.web.exceptions import WebError
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from yarl import URL

from schemas.events import format_instant, parse_instant
from schemas.policy import POLICY_INPUT_ADAPTER
from streams.config import Settings
from streams.ledger import Limits, Rejection, decode_event
from streams.ledger.partitioning import key_partition
from streams.processing.processor import status_view
from streams.processing.records import AccountRecord
from streams.processing.state_store import account_key
from streams.worker.app import Wiring
from streams.worker.runtime import WorkerRuntime

#: What a gateway should do on 503 (the README says the same).
RETRY_AFTER_MS = 200


def worker_status(app) -> str:
    """running | recovering | rebalancing | starting: what a caller can rely on now."""
    if app.rebalancing:
        return "rebalancing"
    if getattr(app, "in_recovery", False) or app.tables.recovery.in_recovery:
        return "recovering"
    if not app.tables.recovery.completed.is_set():
        return "starting"
    return "running"


def unavailable_body(state: str) -> dict[str, Any]:
    return {"error": "unavailable", "status": state, "reason": f"worker is {state}: account state is not readable yet",
            "retry_after_ms": RETRY_AFTER_MS}


def admin_refusal(admin_token: str, authorization: str) -> tuple[int, dict] | None:
    """None when `authorization` carries the admin token; else the (403 | 401, body) answer.

    Constant-time comparison; the token is never echoed or logged.
    """
    if not admin_token:
        return 403, {"error": "admin_disabled",
                     "reason": "set TOKENPLAN_ADMIN_TOKEN on the worker to enable admin operations"}
    offered = authorization.removeprefix("Bearer ").strip()
    if not hmac.compare_digest(offered.encode(), admin_token.encode()):
        return 401, {"error": "unauthorized", "reason": "missing or wrong admin token"}
    return None


def json_object(raw: bytes) -> tuple[dict, None] | tuple[None, dict]:
    """(the admin request body, None) or (None, the 400 body) when it is not a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, {"error": "bad_request", "reason": "body must be JSON"}
    if not isinstance(body, dict):
        return None, {"error": "bad_request", "reason": "body must be a JSON object"}
    return body, None


def refresh_event(raw: bytes, limits: Limits) -> tuple[dict | None, dict | None]:
    """(the quota.refreshed event to publish, None) or (None, the 400 body) for an admin request body."""
    body, error = json_object(raw)
    if error is not None:
        return None, error
    event = {"type": "quota.refreshed", "occurred_at": body.get("occurred_at")}
    event["event_id"] = body.get("event_id") or f"admin-refresh-{body.get('account_id') or 'all'}-{body.get('occurred_at')}"
    if body.get("account_id") is not None:
        event["account_id"] = body["account_id"]
    decoded = decode_event(orjson.dumps(event), limits)
    if isinstance(decoded, Rejection):
        return None, {"error": "bad_request", "reason": decoded.reason.value, "detail": decoded.detail}
    return event, None


def reinstate_event(raw: bytes, now: datetime) -> tuple[dict | None, dict | None]:
    """(the key.reinstated event to publish, None) or (None, the 400 body).

    Body: {"key_id", "account_id", "reason"}; the reason is required: it is the record
    of why an operator overrode the policy.
    """
    body, error = json_object(raw)
    if error is not None:
        return None, error
    event = {"type": "key.reinstated", "occurred_at": format_instant(now), "key_id": body.get("key_id"),
             "account_id": body.get("account_id"), "reason": body.get("reason"),
             "event_id": f"reinstate-{body.get('key_id')}-{format_instant(now)}"}
    try:
        POLICY_INPUT_ADAPTER.validate_python(event)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors()[:3])
        return None, {"error": "bad_request", "reason": "invalid_reinstatement", "detail": problems}
    return event, None


class Owners:
    """Which worker owns each partition of the accounts table, as faust's assignor says.

    faust's `app.router.route_req` answers the same question per request by hashing the
    key again (aiokafka's pure-Python murmur2), parsing the owner's URL and, for a key
    this worker owns, raising SameNode: about a tenth of a lookup's CPU. The changelog
    distribution it reads is replaced on every assignment, so the per-partition map is
    rebuilt when that object changes and is otherwise one dict lookup.
    """

    def __init__(self, app, changelog_topic: str, own_url: str) -> None:
        self._app, self._topic = app, changelog_topic
        self._own = _url_ident(URL(own_url))
        self._distribution: object = None
        self._owners: dict[int, tuple[str, int] | None] = {}

    def owner(self, partition: int) -> tuple[str, int] | None:
        """(host, port) of the partition's owner; None when it is this worker.

        Raises LookupError when the current assignment names no owner (mid-rebalance).
        """
        distribution = self._app.router.tables_metadata()
        if distribution is not self._distribution:
            self._owners = self._index(distribution)
            self._distribution = distribution
        try:
            return self._owners[partition]
        except KeyError:
            raise LookupError(f"no owner for partition {partition}") from None

    def _index(self, distribution: dict) -> dict[int, tuple[str, int] | None]:
        owners: dict[int, tuple[str, int] | None] = {}
        for url, topics in distribution.items():
            ident = _url_ident(URL(url))
            for partition in topics.get(self._topic, ()):
                owners[partition] = None if ident == self._own else ident
        return owners


def _url_ident(url: URL) -> tuple[str, int]:
    """(host, port) as faust's router compares them (a URL without scheme is host:port)."""
    return (url.host if url.scheme else url.path) or "", int(url.port or 80)


def read_account(wiring: Wiring, runtime: WorkerRuntime, account_id: str,
                 partition: int | None = None) -> AccountRecord | None:
    """The account's record as applied: the unit in flight's (`PartitionRuntime.applied`),
    else the partition's cache, else the local RocksDB."""
    settings = wiring.settings
    if partition is None:
        partition = key_partition(account_id.encode("utf-8"), settings.partitions)
    key = account_key(account_id)
    partition_runtime = runtime.known(partition)
    if partition_runtime is not None:
        record = partition_runtime.applied.get(key) or partition_runtime.records.get(key)
        if record is not None:
            return record
    db = wiring.accounts_table.data._dbs.get(partition)
    raw = None if db is None else db.get(key)
    if raw is None:
        return None
    record = AccountRecord.from_bytes(raw, settings.limits)
    if partition_runtime is not None:
        partition_runtime.records.put(key, record)
    return record


def lookup_body(record: AccountRecord | None, account_id: str, as_of: datetime, settings: Settings) -> dict:
    """The lookup answer (schemas.status.QuotaStatus): the status view plus who answered."""
    body = status_view(record, as_of)
    body["account_id"] = account_id
    body["served_by"] = settings.advertised_url  # the owner, also when the request was routed
    return body


class LeanView(View):
    """A faust View whose dispatch calls the handler and nothing else.

    faust's `View.dispatch` also calls the web sensors (faust's Monitor keeps per-request
    timings and status counts nobody reads here) and builds a `typing` cast on every
    request: about 5% of a lookup's CPU. WebError still becomes faust's error response.
    """

    async def dispatch(self, request: Any) -> Response:
        try:
            return await self.methods[request.method.lower()](request, **request.match_info)
        except WebError as error:
            return await self.on_request_error(request, error)


def register(wiring: Wiring, runtime: WorkerRuntime, exposition: Callable[[], bytes] | None = None) -> None:
    """Hang /health, /accounts/{id}/quota, /admin/* and (given `exposition`) /metrics on the app."""
    app, settings = wiring.app, wiring.settings
    owners = Owners(app, wiring.accounts_table.changelog_topic.get_topic_name(), settings.advertised_url)

    def json_response(view: View, body: dict[str, Any], status: int = 200) -> Response:
        """orjson-encoded JSON (faust's own encoder is slower and knows no Decimal)."""
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    async def forward(view: View, owner: tuple[str, int], request: Request) -> Response:
        """The owner's answer to the same request (faust's router's URL: host and port swapped),
        passed through as bytes.

        faust's router decodes the owner's body to text and encodes it again, and copies
        every request header; a lookup needs neither (the owner makes the whole body).
        """
        host, port = owner
        async with app.http_client.get(request.url.with_host(host).with_port(port)) as response:
            return view.bytes(await response.read(), content_type=response.content_type, status=response.status)

    class Health(View):
        """200 with `running` once tables are recovered and no rebalance is under way; 503 otherwise."""

        async def get(self, request: Request) -> Response:
            state = worker_status(app)
            body = {"status": state, "app_id": app.conf.id, "consumed": runtime.snapshot()}
            return json_response(self, body, status=200 if state == "running" else 503)

    class AccountQuota(LeanView):
        """The gateway lookup: the account view now (or at ?as_of=RFC3339), routed to its owner."""

        async def get(self, request: Request, account_id: str) -> Response:
            state = worker_status(app)
            if state != "running":
                return json_response(self, unavailable_body(state), status=503)
            try:
                as_of = (parse_instant(request.query["as_of"]) if "as_of" in request.query
                         else datetime.now(timezone.utc))
            except ValueError as error:
                return json_response(self, {"error": "bad_request", "reason": f"as_of: {error}"}, status=400)
            partition = key_partition(account_id.encode("utf-8"), settings.partitions)
            try:
                owner = owners.owner(partition)
                if owner is not None:
                    return await forward(self, owner, request)
            except Exception as error:  # the owner is unknown or unreachable mid-rebalance
                return json_response(self, unavailable_body(f"routing ({type(error).__name__})"), status=503)
            record = read_account(wiring, runtime, account_id, partition)
            return json_response(self, lookup_body(record, account_id, as_of, settings))

    class AdminRefresh(View):
        """Publish a quota.refreshed to tokenplan.plans (one account, or all when account_id is absent).

        Body: {"occurred_at": RFC 3339, "account_id": optional, "event_id": optional}. The
        event goes through the ledger like any billing event; this only saves an operator a
        Kafka client. Requires `Authorization: Bearer $TOKENPLAN_ADMIN_TOKEN`.
        """

        async def post(self, request: Request) -> Response:
            refusal = admin_refusal(settings.admin_token, request.headers.get("Authorization", ""))
            if refusal is not None:
                return json_response(self, refusal[1], status=refusal[0])
            event, error = refresh_event(await request.read(), settings.limits)
            if error is not None:
                return json_response(self, error, status=400)
            key = event["account_id"].encode("utf-8") if "account_id" in event else None
            await wiring.plans_topic.send(key=key, value=orjson.dumps(event))
            return json_response(self, {"published": event, "topic": wiring.plans_topic.get_topic_name()},
                                 status=202)

    app.page("/health")(Health)
    app.page("/accounts/{account_id}/quota")(AccountQuota)
    class AdminReinstate(View):
        """Publish a key.reinstated to tokenplan.policy (admin token required; the reason is kept)."""

        async def post(self, request: Request) -> Response:
            refusal = admin_refusal(settings.admin_token, request.headers.get("Authorization", ""))
            if refusal is not None:
                return json_response(self, refusal[1], status=refusal[0])
            event, error = reinstate_event(await request.read(), datetime.now(timezone.utc))
            if error is not None:
                return json_response(self, error, status=400)
            await wiring.policy_topic.send(key=event["account_id"].encode("utf-8"), value=orjson.dumps(event))
            return json_response(self, {"published": event, "topic": wiring.policy_topic.get_topic_name()},
                                 status=202)

    app.page("/admin/refresh")(AdminRefresh)
    app.page("/admin/reinstate")(AdminReinstate)

    class Metrics(LeanView):
        """The worker's Prometheus metrics (streams.worker.metrics), in the text exposition format."""

        async def get(self, request: Request) -> Response:
            return self.bytes(exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if exposition is not None:
        app.page("/metrics")(Metrics)
