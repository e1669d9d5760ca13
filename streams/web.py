"""HTTP views of the worker: health and the gateway's account lookup.

faust's web server answers before table recovery has finished, so every view that
reads state says 503 while the worker is recovering or rebalancing.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from schemas.events import parse_instant
from streams.agents import stats
from streams.agents.processor import status_view
from streams.agents.store import read_record
from streams.app import accounts_table, app, limits

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
        record = read_record(accounts_table, key, limits)
        body = status_view(record, as_of)
        body["account_id"] = account_id
        return json_response(self, body)
