"""HTTP views of the worker: health and the gateway's account lookup.

faust's web server answers before table recovery has finished, so every view that
reads state says 503 while the worker is recovering or rebalancing.
"""
from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from schemas.events import parse_instant
from streams.ledger import Rejection, decode_event
from streams.agents import stats
from streams.agents.processor import status_view
from streams.agents.state_store import account_key
from streams.agents.status import record_cache
from streams.app import accounts_table, app, limits, plans_topic, settings
from streams.agents.records import AccountRecord
from streams.ledger.partitioning import key_partition

#: What a gateway should do on 503 (the README says the same).
RETRY_AFTER_MS = 200


def worker_state() -> str:
    """running | recovering | rebalancing | starting: what a caller can rely on now."""
    if app.rebalancing:
        return "rebalancing"
    if getattr(app, "in_recovery", False) or app.tables.recovery.in_recovery:
        return "recovering"
    if not app.tables.recovery.completed.is_set():
        return "starting"
    return "running"


def json_response(view: View, body: dict[str, Any], status: int = 200) -> Response:
    """orjson-encoded JSON (faust's own encoder is slower and knows no Decimal)."""
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def unavailable(view: View, state: str) -> Response:
    return json_response(view, {
        "error": "unavailable", "status": state,
        "reason": f"worker is {state}: account state is not readable yet",
        "retry_after_ms": RETRY_AFTER_MS,
    }, status=503)


@app.page("/health")
class Health(View):
    """200 with `running` once tables are recovered and no rebalance is under way; 503 otherwise."""

    async def get(self, request: Request) -> Response:
        state = worker_state()
        body = {"status": state, "app_id": app.conf.id, "consumed": stats.snapshot()}
        return json_response(self, body, status=200 if state == "running" else 503)


@app.page("/accounts/{account_id}/quota")
class AccountQuota(View):
    """The gateway lookup: the account view now (or at ?as_of=RFC3339), routed to its owner."""

    async def get(self, request: Request, account_id: str) -> Response:
        state = worker_state()
        if state != "running":
            return unavailable(self, state)
        try:
            as_of = parse_instant(request.query["as_of"]) if "as_of" in request.query else datetime.now(timezone.utc)
        except ValueError as error:
            return json_response(self, {"error": "bad_request", "reason": f"as_of: {error}"}, status=400)
        key = account_id.encode("utf-8")
        try:
            return await app.router.route_req(accounts_table.name, key, self.web, request)
        except SameNode:
            pass
        except Exception as error:  # the owner is unknown or unreachable mid-rebalance
            return unavailable(self, f"routing ({type(error).__name__})")
        record = read_account(account_id)
        body = status_view(record, as_of)
        body["account_id"] = account_id
        body["served_by"] = settings.advertised_url  # the owner, also when the request was routed
        return json_response(self, body)


def read_account(account_id: str) -> AccountRecord | None:
    """The account's record from the cache, else from the local RocksDB of its partition."""
    key = account_key(account_id)
    record = record_cache.get(key)
    if record is not None:
        return record
    db = accounts_table.data._dbs.get(key_partition(account_id.encode("utf-8"), settings.partitions))
    raw = None if db is None else db.get(key)
    if raw is None:
        return None
    record = AccountRecord.from_bytes(raw, limits)
    record_cache.put(key, record)
    return record


def admin_refusal(view: View, request: Request) -> Response | None:
    """None when the request carries the admin token; else the 403/401 answer."""
    if not settings.admin_token:
        return json_response(view, {"error": "admin_disabled",
                                     "reason": "set TOKENPLAN_ADMIN_TOKEN on the worker to enable admin operations"},
                             status=403)
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(offered.encode(), settings.admin_token.encode()):
        return json_response(view, {"error": "unauthorized", "reason": "missing or wrong admin token"}, status=401)
    return None


@app.page("/admin/refresh")
class AdminRefresh(View):
    """Publish a quota.refreshed to tokenplan.plans (one account, or all when account_id is absent).

    Body: {"occurred_at": RFC 3339, "account_id": optional, "event_id": optional}. The
    event goes through the ledger like any billing event; this only saves an operator a
    Kafka client. Requires `Authorization: Bearer $TOKENPLAN_ADMIN_TOKEN`.
    """

    async def post(self, request: Request) -> Response:
        refusal = admin_refusal(self, request)
        if refusal is not None:
            return refusal
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response(self, {"error": "bad_request", "reason": "body must be JSON"}, status=400)
        if not isinstance(body, dict):
            return json_response(self, {"error": "bad_request", "reason": "body must be a JSON object"}, status=400)
        event = {"type": "quota.refreshed", "occurred_at": body.get("occurred_at")}
        event["event_id"] = body.get("event_id") or f"admin-refresh-{body.get('account_id') or 'all'}-{body.get('occurred_at')}"
        if body.get("account_id") is not None:
            event["account_id"] = body["account_id"]
        decoded = decode_event(orjson.dumps(event), limits)
        if isinstance(decoded, Rejection):
            return json_response(self, {"error": "bad_request", "reason": decoded.reason.value,
                                        "detail": decoded.detail}, status=400)
        key = event["account_id"].encode("utf-8") if "account_id" in event else None
        await plans_topic.send(key=key, value=orjson.dumps(event))
        return json_response(self, {"published": event, "topic": plans_topic.get_topic_name()}, status=202)
