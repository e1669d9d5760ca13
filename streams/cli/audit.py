"""`tokenplan audit`: replay the ledger-log from Kafka and compare every account with the live answer."""
from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import orjson

from schemas.events import format_instant

HELP = "compare a replay of the ledger-log with the live lookups (exit 0 equal, 1 different, 2 cannot run)"
DESCRIPTION = """\
Replays tokenplan.ledger-log from the beginning (up to its end when the audit starts)
with the live ledger's code, then asks the live worker (--url) for every replayed
account, and every account on tokenplan.quota-status, at the same instant (--as-of,
default now), and compares the account views field by field.

Prints one line per differing account and a JSON summary. An account whose live answer
already reflects events after the replay's end is counted as `live_ahead`, not as a
difference (audit a quiet system, or run it again).

--catalog FILE also re-rates the same log under another catalog (what-if pricing) and
reports per account how credits used would change; live state is never touched.

Exit 0 when every account is equal, 1 on any difference, 2 when the audit cannot run
(broker or worker unreachable, bad arguments)."""

#: Concurrent lookups while auditing.
LOOKUP_CONCURRENCY = 8
#: Per-lookup timeout.
LOOKUP_TIMEOUT_S = 10.0
#: How often a lookup answering 503 is retried (a rebalance), one second apart.
LOOKUP_RETRIES_MAX = 10


class AuditError(Exception):
    """The audit cannot run: exit 2 with this message."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None,
                        help="a worker's base URL (default http://127.0.0.1:$TOKENPLAN_WEB_PORT); any worker answers for any account")
    parser.add_argument("--as-of", metavar="T", help="RFC 3339 instant for both sides (default: now)")
    parser.add_argument("--catalog", metavar="FILE", help="also re-rate the log under this catalog JSON (what-if)")
    parser.add_argument("--out", metavar="FILE", help="also write the full report (JSON) here")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a TTY)")
    parser.set_defaults(func=run)


def fetch_view(base_url: str, account_id: str, as_of: datetime) -> dict | None:
    """The live lookup at as_of; None for 404; raises AuditError when the worker stays unavailable."""
    quoted = urllib.parse.quote(account_id, safe="")
    url = f"{base_url}/accounts/{quoted}/quota?as_of={urllib.parse.quote(format_instant(as_of))}"
    for _attempt in range(LOOKUP_RETRIES_MAX):
        try:
            with urllib.request.urlopen(url, timeout=LOOKUP_TIMEOUT_S) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code != 503:
                raise AuditError(f"lookup of {account_id!r} answered {error.code}") from error
        except OSError as error:
            raise AuditError(f"worker at {base_url} unreachable: {error}") from error
        import time

        time.sleep(1.0)
    raise AuditError(f"worker at {base_url} stayed unavailable (503) for {account_id!r}")


def live_views(base_url: str, account_ids: list[str], as_of: datetime) -> dict[str, dict | None]:
    with ThreadPoolExecutor(LOOKUP_CONCURRENCY) as pool:
        views = list(pool.map(lambda account_id: fetch_view(base_url, account_id, as_of), account_ids))
    return dict(zip(account_ids, views))


async def status_accounts(settings) -> set[str]:
    """Account ids on the compacted quota-status topic (what gateways were told about)."""
    from schemas import topics
    from streams.audit.kafka_read import read_topic

    seen: set[str] = set()

    def note(message) -> None:
        if message.key:
            seen.add(message.key.decode("utf-8", "replace"))

    try:
        await read_topic(settings.bootstrap_servers, settings.topic(topics.QUOTA_STATUS), note)
    except LookupError:
        return set()
    return seen


def run(args: argparse.Namespace) -> int:
    from streams.audit.compare import compare, what_if
    from streams.cli.replay import UsageError, parse_as_of, replay_kafka
    from streams.config import Settings

    settings = Settings.from_env()
    base_url = (args.url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    try:
        as_of = parse_as_of(args.as_of)
        replayed = replay_kafka(as_of, args.progress)
        accounts = sorted(set(replayed["accounts"]) | asyncio.run(status_accounts(settings)))
        live = live_views(base_url, accounts, as_of)
        report = compare(replayed["accounts"], live, replayed["log_end_offsets"])
        full = {"as_of": format_instant(as_of), "summary": report.summary(), "diffs": [d.to_dict() for d in report.diffs]}
        if args.catalog:
            full["what_if"] = _what_if(args.catalog, as_of, replayed, settings, what_if)
    except (UsageError, AuditError) as error:
        print(f"tokenplan audit: {error}", file=sys.stderr)
        return 2
    for diff in report.diffs:
        print(f"DIFF {diff.account_id} {diff.kind} {orjson.dumps(diff.to_dict()['fields']).decode()}")
    if args.out:
        with open(args.out, "wb") as handle:
            handle.write(orjson.dumps(full, option=orjson.OPT_INDENT_2))
    print(orjson.dumps({**report.summary(), **({"what_if": full["what_if"]} if "what_if" in full else {})}).decode())
    return 0 if report.ok else 1


def _what_if(path: str, as_of: datetime, replayed: dict, settings, what_if) -> dict:
    """Re-rate the same ledger-log under the catalog in `path` (nothing live is touched)."""
    from streams.cli.replay import UsageError
    from streams.audit.kafka_replay import replay_ledger_log
    from streams.ledger import load_catalog

    try:
        catalog = load_catalog(path)
    except Exception as error:
        raise UsageError(f"cannot load catalog {path}: {error}") from error
    alternative = asyncio.run(replay_ledger_log(settings, catalog, settings.limits, as_of)).result(as_of)
    return what_if(replayed["accounts"], alternative["accounts"])
