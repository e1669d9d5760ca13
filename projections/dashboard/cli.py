"""`tokenplan dashboard`: the account and operator pages and the JSON API, on the projection database."""
from __future__ import annotations

import argparse
import os
import sys

from projections.settings import DEFAULTS, ProjectorSettings

HELP = "serve the account and operator pages and the JSON API from the projection database"
DESCRIPTION = """\
Reads the tables `tokenplan projector` fills at TOKENPLAN_PROJECTIONS_URL
(default sqlite:///.data/projections.db; postgresql://user@host/db works too); it never
writes them.

Pages: /  (operations: projector throughput and lag per topic, accounts by status,
recent exhaustions, dead letters by reason, webhook failures) and /accounts/ID
(remaining credits, usage by model per hour or day, peak and off-peak, the forecast,
charges, alerts, packages and payments). Charts are SVG drawn by the server: nothing is
fetched from elsewhere, the pages work offline.

API: GET /api/accounts/ID, /api/accounts/ID/usage?from=&to=&bucket=hour|day,
/api/accounts/ID/forecast, /api/fleet, /health. Decimals are strings, instants UTC
RFC 3339; 400 for unusable parameters, 404 for an unknown account.

Lag per topic compares the projector's stored offsets with Kafka's high-water marks
(KAFKA_BOOTSTRAP_SERVERS, TOKENPLAN_TOPIC_PREFIX); with TOKENPLAN_WORKER_URL the
worker's applied counts are shown too."""
DEFAULT_PORT = 6070


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `dashboard` subcommand."""
    parser = subparsers.add_parser("dashboard", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--url", help=f"database URL (default TOKENPLAN_PROJECTIONS_URL, "
                                      f"{DEFAULTS['TOKENPLAN_PROJECTIONS_URL']})")
    parser.add_argument("--no-kafka", action="store_true", help="do not ask Kafka for high-water marks (no lag)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from projections.dashboard.app import Dashboard, build_app
    from projections.store import SchemaMismatch, check_schema, open_engine

    try:
        settings = ProjectorSettings.from_env()
    except ValueError as error:
        print(f"tokenplan dashboard: {error}", file=sys.stderr)
        return 2
    engine = open_engine(args.url or settings.projections_url)
    try:
        check_schema(engine)
    except SchemaMismatch as error:
        print(f"tokenplan dashboard: {error}", file=sys.stderr)
        return 2
    dashboard = Dashboard(engine, topic_prefix=settings.topic_prefix,
                          bootstrap=None if args.no_kafka else settings.bootstrap,
                          worker_url=os.environ.get("TOKENPLAN_WORKER_URL") or None)
    print(f"dashboard: http://{args.host}:{args.port}/ reading {engine.url.render_as_string(hide_password=True)}",
          file=sys.stderr, flush=True)
    web.run_app(build_app(dashboard), host=args.host, port=args.port, print=None)
    return 0
