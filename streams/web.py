"""HTTP views of the worker: health now, account lookups with the ledger.

faust's web server answers before table recovery has finished, so every view that
reads state must say 503 while the worker is recovering or rebalancing.
"""
from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View

from streams.app import app
from streams.agents import stats


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


@app.page("/health")
class Health(View):
    """200 with `running` once tables are recovered and no rebalance is under way; 503 otherwise."""

    async def get(self, request: Request) -> Response:
        state = worker_state()
        body = {
            "status": state,
            "app_id": app.conf.id,
            "consumed": stats.snapshot(),
        }
        return json_response(self, body, status=200 if state == "running" else 503)
