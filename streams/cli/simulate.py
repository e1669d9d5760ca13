"""`tokenplan simulate`: a small gateway + billing traffic simulator for `make run`.

Publishes, keyed by account_id, a purchase per account to `tokenplan.plans` and then
realistic usage to `tokenplan.usage`: several models (TTS included), the three
clusters, both protocols, off-peak and peak hours as they come, and a share of gateway
retries (the same event_id sent twice) that the ledger must count once. Times are the
wall clock (`occurred_at` = now), so the lookup endpoint shows balances moving.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
from datetime import datetime, timezone

import orjson

#: (API model id, weight): mostly the cheap flagship, some Pro, a little of the rest.
MODELS = (("mimo-v2.5", 50), ("mimo-v2.5-pro", 25), ("mimo-v2-omni", 10), ("mimo-v2-pro", 5), ("mimo-v2.5-tts", 10))
CLUSTERS = ("cn", "sgp", "ams")
PROTOCOLS = (("openai", "opencode/1.4"), ("anthropic", "claude-code/2.1"))
TIERS = ("lite", "standard", "pro", "max")
#: Share of usage events that a gateway sends twice (a retry after a timeout).
RETRY_SHARE = 0.05


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def purchase(account_id: str, rng: random.Random, run_id: str) -> dict:
    return {
        "type": "plan.purchased", "event_id": f"{run_id}-buy-{account_id}", "occurred_at": now_text(),
        "account_id": account_id, "tier": rng.choice(TIERS), "period": rng.choice(("monthly", "annual")),
        "currency": rng.choice(("USD", "CNY")), "auto_renew": rng.random() < 0.3,
    }


def usage(account_id: str, sequence: int, rng: random.Random, run_id: str) -> dict:
    model = rng.choices([m for m, _ in MODELS], weights=[w for _, w in MODELS])[0]
    protocol, client = rng.choice(PROTOCOLS)
    prompt = rng.randint(2_000, 120_000)
    hit = int(prompt * rng.uniform(0.5, 0.95))
    return {
        "type": "usage", "event_id": f"{run_id}-use-{account_id}-{sequence}", "occurred_at": now_text(),
        "account_id": account_id, "model": model, "input_cache_hit_tokens": hit,
        "input_cache_miss_tokens": prompt - hit, "output_tokens": rng.randint(50, 8_000),
        "key_id": f"key-{account_id}-1", "cluster": rng.choice(CLUSTERS), "protocol": protocol, "client": client,
    }


async def simulate(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer

    from streams.config import Settings

    settings = Settings.from_env()
    rng = random.Random(args.seed)
    run_id = f"sim{args.seed}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    accounts = [f"acct-{index:03d}" for index in range(args.accounts)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for account_id in accounts:
            await producer.send(settings.topic("plans"), orjson.dumps(purchase(account_id, rng, run_id)), key=account_id.encode())
        await producer.flush()
        print(f"simulate: {len(accounts)} purchases sent; usage at ~{args.rate}/s (Ctrl-C stops)", file=sys.stderr, flush=True)
        while args.events == 0 or sent < args.events:
            account_id = rng.choice(accounts)
            value = orjson.dumps(usage(account_id, sent, rng, run_id))
            copies = 2 if rng.random() < RETRY_SHARE else 1
            for _ in range(copies):
                await producer.send(settings.topic("usage"), value, key=account_id.encode())
            sent += 1
            if args.rate > 0:
                await asyncio.sleep(1 / args.rate)
    finally:
        await producer.flush()
        await producer.stop()
        print(f"simulate: {sent} usage events sent", file=sys.stderr, flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="publish simulated purchases and gateway usage",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=12, help="number of accounts (default 12)")
    parser.add_argument("--rate", type=float, default=20.0, help="usage events per second (default 20; 0 = as fast as possible)")
    parser.add_argument("--events", type=int, default=0, help="stop after this many usage events (default 0 = until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(simulate(args))
    except KeyboardInterrupt:
        return 0
