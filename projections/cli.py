"""`tokenplan projector`: fold the out-topics into SQL read models and decide alerts."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from projections.settings import DEFAULTS, ProjectorSettings

HELP = "fold the out-topics into SQL tables (dashboards) and send quota alerts"
DESCRIPTION = """\
Reads tokenplan.balance-changed, quota-exhausted, quota-status and rejected (prefix
TOKENPLAN_TOPIC_PREFIX) as consumer group <app_id>-projector and folds them into the
tables of projections/tables.py at TOKENPLAN_PROJECTIONS_URL
(default sqlite:///.data/projections.db; postgresql://user@host/db works too).

Each fetched batch (at most TOKENPLAN_PROJECTOR_BATCH_MAX records) is one transaction:
the rows and the consumed offsets commit together, and facts are applied once by
event_id, so a crash or a redelivery never double-counts. At start it resumes from the
offsets in the database (not Kafka's); an empty database projects from offset 0.

Alerts: when a package period's used credits reach each of TOKENPLAN_ALERT_THRESHOLDS
(default 80,90,100 percent), one alert with id alert:{account}:{valid_from}:{threshold}
is decided in the batch's transaction, then published to tokenplan.alerts (keyed by
account) and, when TOKENPLAN_WEBHOOK_URL is set, POSTed signed with HMAC-SHA-256 of
TOKENPLAN_WEBHOOK_SECRET (header X-Tokenplan-Signature), retried with backoff.
A usage-policy warning or key suspension goes the same way, id alert:policy:{fact id}.

A progress line goes to stderr every TOKENPLAN_PROJECTOR_PROGRESS_S seconds; Prometheus
metrics (tokenplan_projector_*) answer GET /metrics on 127.0.0.1:TOKENPLAN_PROJECTOR_METRICS_PORT
(default 6071; 0: none; a port already taken is said on stderr and skipped).
Exit codes: 0 stopped (Ctrl-C, SIGTERM, or idle with --idle-exit), 2 unusable settings or
tables of an older layout (the message says to re-project with --rebuild)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `projector` subcommand."""
    parser = subparsers.add_parser("projector", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help=f"database URL (default TOKENPLAN_PROJECTIONS_URL, "
                                      f"{DEFAULTS['TOKENPLAN_PROJECTIONS_URL']})")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="exit once nothing new arrived for SECONDS (back-fills, tests)")
    parser.add_argument("--rebuild", action="store_true",
                        help="drop the projector's tables first: project everything again from offset 0")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the settings, then run the projector until a signal (or idle)."""
    from projections.projector import Projector
    from projections.store import SchemaMismatch, check_schema, drop_schema, open_engine

    try:
        settings = ProjectorSettings.from_env()
        if args.url:
            settings = ProjectorSettings(**{**settings.__dict__, "projections_url": args.url})
    except ValueError as error:
        print(f"tokenplan projector: {error}", file=sys.stderr)
        return 2
    engine = open_engine(settings.projections_url)
    if args.rebuild:
        drop_schema(engine)
        print("projector: tables dropped; projecting from offset 0", file=sys.stderr)
    try:
        check_schema(engine)
    except SchemaMismatch as error:
        print(f"tokenplan projector: {error}", file=sys.stderr)
        return 2
    projector = Projector(settings, engine)
    return asyncio.run(_run(projector, args.idle_exit))


async def _run(projector, idle_exit_s: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await projector.run(stop, idle_exit_s=idle_exit_s)
    return 0
