"""`tokenplan quote EVENTS.jsonl --account A --action purchase|upgrade ...`: what it would cost."""
from __future__ import annotations

import argparse
import sys

import orjson

from streams.cli.replay import UsageError, parse_as_of, replay_into
from streams.config import limits_from_env, partitions_from_env
from streams.ledger.catalog import load_catalog
from streams.ledger.fold import Fold
from streams.ledger.decisions import quote

HELP = "price a purchase or upgrade for an account, from its history"
DESCRIPTION = """\
Replay EVENTS.jsonl, then answer what ACCOUNT would pay at --at (default now):
  {"allowed": true, "amount": "44.00", "currency": "USD",
   "discount": "first_purchase" | "auto_renew_new" | "auto_renew_existing" | null}
or {"allowed": false, "reason": "...", "detail": "..."}.
Exit 0 for an answer either way, 2 for unusable input."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `quote` subcommand."""
    parser = subparsers.add_parser("quote", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", metavar="EVENTS.jsonl", help="events file, or - for stdin")
    parser.add_argument("--account", required=True, help="account_id to quote for")
    parser.add_argument("--action", required=True, choices=("purchase", "upgrade"))
    parser.add_argument("--tier", required=True, choices=("lite", "standard", "pro", "max"))
    parser.add_argument("--period", required=True, choices=("monthly", "annual"))
    parser.add_argument("--currency", required=True, choices=("USD", "CNY"))
    parser.add_argument("--auto-renew", action="store_true",
                        help="the purchase activates auto-renewal (may earn its discount)")
    parser.add_argument("--at", metavar="T", help="RFC 3339 instant with offset (default: now)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the quote JSON; 2 with a message on stderr for unusable input."""
    try:
        at = parse_as_of(args.at)
        catalog = load_catalog()
        ledger = replay_into(Fold(catalog, limits_from_env(), partitions=partitions_from_env()), args.events,
                             progress=False)
    except UsageError as error:
        print(f"tokenplan quote: {error}", file=sys.stderr)
        return 2
    answer = quote(ledger.accounts.get(args.account), args.action, args.tier, args.period,
                   args.currency, args.auto_renew, at, catalog, ledger.memory_of(args.account))
    sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
    return 0
