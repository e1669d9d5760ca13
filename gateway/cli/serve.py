"""`tokenplan gateway --cluster sgp --upstream URL [--port 8080]`: the reference gateway."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from gateway.config import GatewaySettings, defaults_text
from gateway.proxy.serve import running

HELP = "the reference gateway: OpenAI- and Anthropic-compatible, metered, stops service at exhaustion"


def description() -> str:
    return ("Routes: POST /v1/chat/completions, POST /v1/responses, GET /v1/models (OpenAI; "
            "Authorization: Bearer tp-...), POST /anthropic/v1/messages (Anthropic; x-api-key or Bearer), "
            "GET /health, GET /metrics.\n\nEvery request is admitted from a local cache of tokenplan.keys and "
            "tokenplan.quota-status, forwarded to --upstream, and metered: one usage event per reply.\n\n"
            "Settings (environment):\n" + defaults_text())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gateway` subcommand."""
    parser = subparsers.add_parser("gateway", help=HELP, description=description(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", choices=("cn", "sgp", "ams"), help="this gateway's cluster (usage events carry it)")
    parser.add_argument("--upstream", help="the model server's base URL, e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080; 0 picks a free one)")
    parser.add_argument("--worker", help="the worker's URL for lookups on a cache miss")
    parser.add_argument("--stale-policy", choices=("fail-closed", "fail-open"),
                        help="when the cache is stale: refuse (default) or allow accounts last seen active")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings = GatewaySettings.from_env(cluster=args.cluster, upstream_url=args.upstream, host=args.host,
                                        port=args.port, worker_url=args.worker, stale_policy=args.stale_policy)
    try:
        if settings.event_loop == "uvloop":
            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    except SystemExit as error:
        if isinstance(error.code, str):
            print(f"tokenplan gateway: {error.code}", file=sys.stderr)
            return 2
        raise
    return 0


async def serve(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings) as (_gateway, url):
        logging.getLogger("tokenplan.gateway").info(
            "gateway (%s) on %s, upstream %s, worker %s, stale policy %s", settings.cluster, url,
            settings.upstream_url, settings.worker_url, settings.stale_policy)
        await stop.wait()
