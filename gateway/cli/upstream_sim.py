"""`tokenplan upstream-sim`: serve the fake OpenAI and Anthropic upstream (gateway.upstream_sim)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from gateway.upstream_sim import SimConfig, build_app

HELP = "serve a fake OpenAI and Anthropic model server for local runs and tests"
DESCRIPTION = """\
A deterministic stand-in for the model providers: the same request always gets the
same reply text and token counts, and repeated prompt prefixes are reported as cached.
Routes (models: the catalog's, schemas/catalog.json):
  POST /v1/chat/completions   OpenAI Chat Completions (stream and stream_options.include_usage)
  POST /v1/responses          OpenAI Responses (no streaming)
  POST /v1/messages           Anthropic Messages (stream: the real event sequence)
  GET  /v1/models             the served models (Anthropic's shape with an anthropic-version header)
Point the SDKs at it: OpenAI base_url=http://HOST:PORT/v1, Anthropic base_url=http://HOST:PORT.
A request header `x-sim-fail: 500` (any 4xx/5xx) answers with that error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `upstream-sim` subcommand."""
    parser = subparsers.add_parser("upstream-sim", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=9000,
                        help="port to listen on, 0 for any free one (default: %(default)s)")
    parser.add_argument("--latency-ms", type=non_negative(int), default=0, metavar="N",
                        help="wait N ms before the first byte of every reply (default: %(default)s)")
    parser.add_argument("--tokens-per-s", type=non_negative(float), default=0, metavar="N",
                        help="stream at N output tokens per second; 0 sends at once (default: %(default)s)")
    parser.add_argument("--fail-every", type=non_negative(int), default=0, metavar="N",
                        help="answer every Nth model request with a 500; 0 never (default: %(default)s)")
    parser.set_defaults(func=run)


def non_negative(kind: type[int] | type[float]) -> type:
    """An argparse type that rejects negative numbers with a usage error, not a traceback."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on Ctrl-C, 2 when the address cannot be bound."""
    config = SimConfig(latency_ms=args.latency_ms, tokens_per_s=args.tokens_per_s, fail_every=args.fail_every)
    try:
        asyncio.run(serve(config, args.host, args.port))
    except KeyboardInterrupt:
        return 0
    except OSError as error:
        print(f"tokenplan upstream-sim: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    return 0


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Bind first, then log the real URL (port 0 picks one), then serve forever."""
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"tokenplan upstream-sim: serving on http://{host}:{bound} (OpenAI base_url http://{host}:{bound}/v1)",
              file=sys.stderr, flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
