"""`tokenplan gateway-traffic`: coding tools' traffic through the gateway (gateway.traffic)."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from rich.console import Console

from gateway.config import GatewaySettings
from gateway.traffic import TrafficConfig, TrafficReport, run_traffic

HELP = "drive the real openai and anthropic SDKs through the gateway, as coding tools do"
DESCRIPTION = """\
Each simulated account buys a plan (plan.purchased on tokenplan.plans), gets a key
(as `tokenplan keys issue` does) and is used by one coding tool in turn: Claude Code
(Anthropic Messages), opencode (OpenAI Chat Completions), Codex (OpenAI Responses),
with their User-Agents, a long repeated system prompt (reported as cached) and
conversations that grow. Requests are streamed or not. Every few seconds a line shows
requests served and refused (by the gateway's reason) and each account's remaining
credits from the worker's lookup.

--exhaust adds one account on a lite plan that pastes ~600 KB files into MiMo-V2-Pro
until the gateway refuses it with 429 (usually within a minute); the SDK's
RateLimitError message is printed.

Kafka and the key secret come from the environment, as for `tokenplan keys`:
KAFKA_BOOTSTRAP_SERVERS, TOKENPLAN_TOPIC_PREFIX, TOKENPLAN_KEY_SECRET(_FILE); the
secret must be the gateway's. Exit codes: 0 done, 2 no Kafka, worker or gateway."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gateway-traffic` subcommand."""
    parser = subparsers.add_parser("gateway-traffic", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="the gateway's URL (default: %(default)s)")
    parser.add_argument("--worker", default="http://127.0.0.1:6066",
                        help="the worker's URL, for the remaining credits (default: %(default)s)")
    parser.add_argument("--accounts", type=int, default=6, help="accounts, one tool each (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=4.0,
                        help="requests per second over all accounts, --exhaust's not counted (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=0, help="run this long; 0 = until Ctrl-C (default: 0)")
    parser.add_argument("--exhaust", action="store_true", help="add one lite account driven until refused with 429")
    parser.add_argument("--tier", choices=("lite", "standard", "pro", "max"),
                        help="the accounts' tier (default: standard, pro, max, lite in turn)")
    parser.add_argument("--seed", type=int, default=12, help="random seed of prompts and pacing (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until --seconds or Ctrl-C/SIGTERM; a summary either way."""
    if args.accounts < 0 or args.rate < 0 or args.seconds < 0:
        print("tokenplan gateway-traffic: --accounts, --rate and --seconds must be 0 or more", file=sys.stderr)
        return 2
    config = TrafficConfig(gateway_url=args.gateway.rstrip("/"), worker_url=args.worker.rstrip("/"),
                           accounts=args.accounts, rate=args.rate, seconds=args.seconds, exhaust=args.exhaust,
                           tier=args.tier, seed=args.seed)
    console = Console(highlight=False, soft_wrap=True)
    try:
        report = asyncio.run(_main(config, console))
    except SystemExit as error:
        if isinstance(error.code, str):
            print(f"tokenplan gateway-traffic: {error.code}", file=sys.stderr)
            return 2
        raise
    console.print(summary(report))
    return 0


async def _main(config: TrafficConfig, console: Console) -> TrafficReport:
    """SIGINT and SIGTERM end the run gracefully (make run stops its children with SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await run_traffic(config, GatewaySettings.from_env(), console, stop)


def summary(report: TrafficReport) -> str:
    """The last word: totals, and how the exhausted account was stopped."""
    tally = report.tally
    line = (f"gateway-traffic: served {sum(tally.served.values())} {dict(tally.served)}, "
            f"refused {sum(tally.refused.values())} {dict(tally.refused)}")
    if report.exhausted_account:
        line += f"\n  {report.exhausted_account} refused with {report.exhausted_status}: {report.exhausted_error}"
    return line
