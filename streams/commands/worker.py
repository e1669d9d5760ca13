"""`tokenplan worker`: run the faust worker (agents, tables, HTTP endpoint)."""
from __future__ import annotations

import argparse
import sys

HELP = """Start a tokenplan worker: consumes the input topics, keeps account state in
RocksDB-backed faust tables, and serves GET /health (and account lookups) on
TOKENPLAN_WEB_HOST:TOKENPLAN_WEB_PORT. Configuration comes from the environment:
KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092), TOKENPLAN_WEB_PORT (6066),
TOKENPLAN_DATA_DIR (.data), TOKENPLAN_PARTITIONS (8), TOKENPLAN_APP_ID (tokenplan),
TOKENPLAN_TOPIC_PREFIX (tokenplan.). Stop it with Ctrl-C or SIGTERM."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run the streaming worker", description=HELP)
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from faust.worker import Worker

    from streams.app import app, settings, topic_specs
    from streams.topic_admin import TopicLayoutError, ensure_topics

    logging.basicConfig(level=args.loglevel.upper())
    try:
        asyncio.run(ensure_topics(settings, topic_specs()))
    except TopicLayoutError as error:
        print(f"tokenplan worker: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the broker is unreachable or refuses: say so, plainly
        print(f"tokenplan worker: cannot prepare topics on {settings.bootstrap_servers}: {error!r}", file=sys.stderr)
        return 2
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # faust's loop and its consumer thread's
    worker = Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0
