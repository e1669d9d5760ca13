"""`tokenplan keys issue|revoke|list`: the account's `tp-` API keys.

The key is printed once, on stdout, by `issue`; from then on only its key_id and
its HMAC are known to the system. Nothing here logs or prints a key elsewhere.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime, timezone

import aiohttp
import orjson

from gateway.config import GatewaySettings
from gateway.kafka import ensure_topics, idempotent_producer
from gateway.keys.history import key_history
from gateway.keys.records import changed, issued, public_view
from gateway.keys.registry import load_keys
from gateway.keys.secrets import hash_key, load_key_secret, new_key, new_key_id
from schemas.keys import KeyRecord
from schemas.topics import KEY_STATUS, KEYS, POLICY, POLICY_FACTS

HELP = "issue, revoke and list tp- API keys (published on tokenplan.keys as hashes)"
DESCRIPTION = """\
  tokenplan keys issue --account A [--label L]   prints {"key": "tp-...", "key_id": "..."} once
  tokenplan keys revoke KEY_ID [--reason TEXT]   the key is refused from then on
  tokenplan keys list --account A                the account's keys (ids, labels, states; no secrets)
  tokenplan keys show KEY_ID                     its history: issued, violations, warnings, suspensions
  tokenplan keys reinstate KEY_ID --reason TEXT  lift a usage-policy suspension (admin token)

Keys are hashed with HMAC-SHA-256 under TOKENPLAN_KEY_SECRET (or the secret kept in
TOKENPLAN_KEY_SECRET_FILE, default .data/key-secret, created on first use); every
gateway must use the same secret. A key is usable only while its account has a valid
package: the gateway checks the account's quota status on every request.
`reinstate` asks the worker (TOKENPLAN_WORKER_URL, default http://127.0.0.1:6066) with
TOKENPLAN_ADMIN_TOKEN; the worker publishes key.reinstated with the reason on tokenplan.policy.
Exit codes: 0 done, 1 refused (unknown key, already revoked, admin refusal), 2 unusable input or no Kafka."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `keys` subcommand and its three actions."""
    parser = subparsers.add_parser("keys", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    issue = actions.add_parser("issue", help="issue a new key for an account (printed once)")
    issue.add_argument("--account", required=True, help="account_id the key spends from")
    issue.add_argument("--label", help="a name for the key, e.g. 'laptop' (shown by list)")
    revoke = actions.add_parser("revoke", help="revoke a key by its key_id")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", help="recorded with the revocation")
    listing = actions.add_parser("list", help="list an account's keys (no secrets)")
    listing.add_argument("--account", required=True)
    show = actions.add_parser("show", help="a key's history: issued, violations, warnings, suspensions")
    show.add_argument("key_id")
    reinstate = actions.add_parser("reinstate", help="lift a usage-policy suspension (needs TOKENPLAN_ADMIN_TOKEN)")
    reinstate.add_argument("key_id")
    reinstate.add_argument("--reason", required=True, help="why (recorded on the key's history)")
    reinstate.add_argument("--worker", help="the worker's URL (default TOKENPLAN_WORKER_URL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action; Kafka errors become exit 2 with a message."""
    settings = GatewaySettings.from_env()
    action = {"issue": issue_key, "revoke": revoke_key, "list": list_keys, "show": show_key,
              "reinstate": reinstate_key}[args.action]
    try:
        return asyncio.run(action(settings, args))
    except SystemExit as error:
        if isinstance(error.code, str):
            print(f"tokenplan keys: {error.code}", file=sys.stderr)
            return 2
        raise


async def publish(settings: GatewaySettings, *records: KeyRecord) -> None:
    """Write records to the keys topic (one producer) and wait for the broker's acks."""
    await ensure_topics(settings, [KEYS])
    producer = idempotent_producer(settings, "tokenplan-keys")
    await producer.start()
    try:
        sent = [await producer.send(settings.topic(KEYS), key=record.key_id.encode("utf-8"),
                                    value=record.model_dump_json().encode("utf-8")) for record in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def issue_keys(settings: GatewaySettings, account_ids: list[str], label: str | None = None) -> list[tuple[str, str]]:
    """One new key per account: generated, hashed, published; (key, key_id) pairs once acked.

    Shared by `keys issue` and `gateway-traffic`, so simulated tools get keys exactly
    the way a user does (same secret, same record), never by a shortcut.
    """
    secret = load_key_secret(settings.key_secret, settings.key_secret_file)
    now = datetime.now(timezone.utc)
    pairs = [(new_key(), new_key_id()) for _ in account_ids]
    records = [issued(key_id, account, hash_key(secret, key), label, now)
               for (key, key_id), account in zip(pairs, account_ids)]
    await publish(settings, *records)
    return pairs


async def issue_key(settings: GatewaySettings, args: argparse.Namespace) -> int:
    """Generate, hash, publish; then (only then) print the key once."""
    [(key, key_id)] = await issue_keys(settings, [args.account], args.label)
    print(orjson.dumps({"key": key, "key_id": key_id}).decode())
    return 0


async def find_key(settings: GatewaySettings, key_id: str) -> KeyRecord | None:
    """The key's latest record; None (said on stderr) when no key has that id."""
    await ensure_topics(settings, [KEYS])
    record = (await load_keys(settings)).get(key_id)
    if record is None:
        print(f"tokenplan keys: no key with key_id {key_id!r}", file=sys.stderr)
    return record


async def revoke_key(settings: GatewaySettings, args: argparse.Namespace) -> int:
    """Publish the key's revoked state; 1 when the key is unknown or already revoked."""
    record = await find_key(settings, args.key_id)
    if record is None:
        return 1
    if record.status == "revoked":
        print(f"tokenplan keys: {args.key_id} is already revoked", file=sys.stderr)
        return 1
    revoked = changed(record, "key.revoked", datetime.now(timezone.utc), args.reason)
    await publish(settings, revoked)
    print(orjson.dumps(public_view(revoked)).decode())
    return 0


async def list_keys(settings: GatewaySettings, args: argparse.Namespace) -> int:
    """One JSON line per key of the account, oldest first."""
    await ensure_topics(settings, [KEYS])
    records = [r for r in (await load_keys(settings)).values() if r.account_id == args.account]
    for record in sorted(records, key=lambda r: (r.issued_at, r.key_id)):
        print(orjson.dumps(public_view(record)).decode())
    if not records:
        print(f"tokenplan keys: account {args.account!r} has no keys", file=sys.stderr)
    return 0


async def show_key(settings: GatewaySettings, args: argparse.Namespace) -> int:
    """The key's history as JSON; 1 when no key has that id."""
    await ensure_topics(settings, [KEYS, KEY_STATUS, POLICY, POLICY_FACTS])
    history = await key_history(settings, args.key_id)
    if history is None:
        print(f"tokenplan keys: no key with key_id {args.key_id!r}", file=sys.stderr)
        return 1
    print(orjson.dumps(history, option=orjson.OPT_INDENT_2).decode())
    return 0


async def reinstate_key(settings: GatewaySettings, args: argparse.Namespace) -> int:
    """POST the reinstatement to the worker's admin endpoint (the admin token decides)."""
    record = await find_key(settings, args.key_id)
    if record is None:
        return 1
    token = os.environ.get("TOKENPLAN_ADMIN_TOKEN", "")
    url = f"{args.worker or settings.worker_url}/admin/reinstate"
    body = {"key_id": args.key_id, "account_id": record.account_id, "reason": args.reason}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except aiohttp.ClientError as error:
            raise SystemExit(f"the worker at {url} did not answer: {type(error).__name__}") from None
    if status != 202:
        print(f"tokenplan keys: the worker refused ({status}): {answer.get('reason', answer)}", file=sys.stderr)
        return 1
    print(orjson.dumps(answer["published"]).decode())
    return 0
