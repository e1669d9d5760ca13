"""`tokenplan bench`'s gateway section: what the reference gateway costs and how fast it stops.

Three measures, one report entry (`report["gateway"]`):
1. decision: `QuotaCache.decide` in this process, on a cache fed like the follower feeds
   it (`cache_keys` keys, one active status per key's account, some pending spend), timed
   per call with `time.perf_counter_ns` (the clock reads the gateway passes are inside
   the timed call, as in `Gateway.admit`). Target: p99 <= 50 us.
2. overhead: the same non-streaming chat completions (aiohttp client, `concurrency` in
   flight) sent straight to `tokenplan upstream-sim --latency-ms N` and through
   `tokenplan gateway` in front of it, in alternating rounds of one run; both latency
   distributions and the differences of their p50 and p99. The stack: a real worker on
   the real broker in a fresh Namespace, upstream-sim and gateway as subprocesses. The
   live gateway's `tokenplan_gateway_decision_seconds` histogram is scraped from
   /metrics afterwards (bucket bounds: an upper bound of its p50/p99).
3. stop: `exhaustions` lite accounts, each pre-spent to about `PRESPEND_LEFT` credits by
   a usage event published directly (at a peak hour), then exhausted by one request
   through the gateway whose cost exceeds the rest (a long MiMo-V2-Pro prompt). From the
   arrival of its reply, small requests of that account every `POLL_INTERVAL_S` until
   the gateway refuses with 429: the time to the first 429 (any reason: the gateway's
   own spend book may refuse at once) and to the first 429 `exhausted` (the worker's
   status reached the gateway's cache). `parallel` accounts at a time.
Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import asyncio
import gc
import math
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from bench.workload import stamp
from deploy.localrun import Namespace, ServiceProcess, WorkerProcess, gateway_process, http_get, upstream_sim

__all__ = ["GatewayBenchSizes", "decision_timing", "gateway_section", "parse_histogram"]

#: The issue's target for the cache decision.
DECISION_P99_TARGET_US = 50.0
#: The models of the measurements (catalog names; the plan's ratios decide the costs).
SMALL_MODEL = "MiMo-V2.5"
EXHAUST_MODEL = "MiMo-V2-Pro"
#: MiMo-V2-Pro's ratios (schemas/catalog.json): the pre-spend is output at peak, the
#: exhausting prompt is input cache misses, sized for the off-peak coefficient too.
PRO_RATIO_OUTPUT, PRO_RATIO_MISS, OFFPEAK_COEFFICIENT = 2100, 700, Decimal("0.8")
#: Credits left on each stop account after its pre-spend (lite: 4.1e9 a month).
PRESPEND_LEFT = 1_000_000
LITE_CREDITS = 4_100_000_000
#: The stop measurement: poll every 5 ms; give up on an account after 10 s.
POLL_INTERVAL_S = 0.005
STOP_TIMEOUT_S = 10.0
#: Overhead rounds: direct and gateway alternate, so both see the same machine.
OVERHEAD_ROUNDS = 4


@dataclass
class GatewayBenchSizes:
    """The section's sizes (BenchConfig's gateway_* fields; `--smoke` shrinks them)."""

    concurrency: int = 100
    requests: int = 2_000  # per target (direct, gateway), after a warm-up of `concurrency` each
    exhaustions: int = 100
    parallel: int = 5
    latency_ms: int = 20
    cache_keys: int = 100_000
    decisions: int = 100_000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


def summary_ms(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {"count": len(values_ms), "p50_ms": round(percentile(values_ms, 0.5), 2),
            "p99_ms": round(percentile(values_ms, 0.99), 2), "max_ms": round(max(values_ms), 2),
            "mean_ms": round(statistics.fmean(values_ms), 2)}


# ---------------------------------------------------------------- 1. decision, in process

def status_record(account_id: str, index: int, usage_topic: str, remaining: int) -> bytes:
    """A quota-status record value as the worker writes it (schemas.status.QuotaStatus)."""
    return orjson.dumps({
        "account_id": account_id, "status": "active", "allowed": True, "tier": "max", "period": "monthly",
        "credits_limit": "82000000000", "credits_used": str(82_000_000_000 - remaining),
        "credits_remaining": str(remaining), "valid_from": "2026-06-01T00:00:00.000000Z",
        "valid_until": "2026-07-01T00:00:00.000000Z",
        "as_of": {"computed_at": "2026-06-02T10:00:00.000000Z", "event_time": "2026-06-02T09:59:59.000000Z",
                  "log": {"partition": index % 8, "offset": index, "index": 0},
                  "source": {"topic": usage_topic, "partition": index % 8, "offset": index}}})


def decision_timing(cache_keys: int = 100_000, decisions: int = 100_000, seed: int = 7) -> dict:
    """Time `decisions` calls of `QuotaCache.decide` on a cache of `cache_keys` keys and statuses.

    The cache is fed through put_key/put_status with parsed records, as the follower
    does; a tenth of the accounts have pending spend (reserved and unconfirmed), so the
    spend book is read on those decisions as it is for a busy account.
    """
    from gateway.keys.secrets import hash_key
    from gateway.quota.cache import QuotaCache
    from gateway.quota.entries import KeyEntry, parse_status
    from gateway.quota.spend import SpendBook

    rng = random.Random(seed)
    secret = b"bench-decision-secret"
    usage_topic = "bench.tokenplan.usage"
    cache = QuotaCache(stale_after_ms=3000, stale_policy="fail-closed", spend=SpendBook(30.0))
    hashes = []
    began = time.perf_counter()
    for index in range(cache_keys):
        account_id = f"acct-{index}"
        key_hash = hash_key(secret, f"tp-bench-{index:08d}-{rng.getrandbits(64):016x}")
        cache.put_key(key_hash, KeyEntry(f"key_{index:016x}", account_id, "active"))
        cache.put_status(account_id, parse_status(status_record(account_id, index, usage_topic,
                                                                rng.randrange(10**6, 8 * 10**10))), usage_topic)
        hashes.append(key_hash)
        if index % 10 == 0:
            cache.spend.reserve(account_id, f"req-{index}", Decimal(rng.randrange(1000, 10**6)))
            cache.spend.settle(account_id, f"req-{index}", (index % 8, index + 1), Decimal(5000), time.monotonic())
            cache.spend.reserve(account_id, f"req-{index}-b", Decimal(rng.randrange(1000, 10**6)))
    build_s = time.perf_counter() - began
    picks = [hashes[rng.randrange(cache_keys)] for _ in range(decisions)]
    estimates = [Decimal(rng.randrange(100, 2_000_000)) for _ in range(64)]
    timings = [0] * decisions
    reasons: Counter[str] = Counter()
    decide, perf_ns, wall, mono = cache.decide, time.perf_counter_ns, time.time, time.monotonic
    gc.collect()
    cache.caught_up_at_ms = wall() * 1000
    for index, key_hash in enumerate(picks):
        if index % 10_000 == 0:
            cache.caught_up_at_ms = wall() * 1000  # the follower marks it caught up every fetch
        estimate = estimates[index & 63]
        start = perf_ns()
        decision = decide(key_hash, estimate, wall() * 1000, mono())
        timings[index] = perf_ns() - start
        reasons[decision.reason] += 1
    micros = [ns / 1000 for ns in timings]
    p99 = percentile(micros, 0.99)
    return {"keys": len(cache.keys), "statuses": len(cache.statuses), "accounts_with_pending_spend": cache.spend.accounts(),
            "decisions": decisions, "build_seconds": round(build_s, 2),
            "p50_us": round(percentile(micros, 0.5), 2), "p99_us": round(p99, 2),
            "p999_us": round(percentile(micros, 0.999), 2), "max_us": round(max(micros), 2) if micros else None,
            "mean_us": round(statistics.fmean(micros), 2) if micros else None,
            "reasons": dict(reasons), "target_p99_us": DECISION_P99_TARGET_US,
            "within_target": p99 <= DECISION_P99_TARGET_US}


def parse_histogram(text: str, name: str) -> dict:
    """A Prometheus histogram from /metrics text: cumulative buckets, count, sum, and the
    bucket bounds its p50 and p99 fall under (upper bounds, in microseconds)."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
    buckets.sort()

    def bound_of(fraction: float):
        for bound, cumulative in buckets:
            if count and cumulative >= fraction * count:
                return None if bound == float("inf") else round(bound * 1e6, 1)
        return None

    return {"count": int(count), "mean_us": round(total / count * 1e6, 2) if count else None,
            "p50_le_us": bound_of(0.5), "p99_le_us": bound_of(0.99),
            "buckets_us": {("+Inf" if b == float("inf") else f"{b * 1e6:g}"): int(c) for b, c in buckets}}


# ---------------------------------------------------------------- the stack

def peak_instant_before(now: datetime) -> datetime:
    """10:00 UTC of today, or of yesterday before that: peak hours (no off-peak coefficient)."""
    today = now.replace(hour=10, minute=0, second=0, microsecond=0)
    return today if today < now - timedelta(minutes=1) else today - timedelta(days=1)


async def issue_keys(bootstrap: str, ns: Namespace, secret_file: Path, accounts: list[str]) -> dict[str, str]:
    """account -> a new tp- key: what `tokenplan keys issue --account A` does (gateway.cli.keys),
    for many accounts with one producer."""
    from aiokafka import AIOKafkaProducer

    from gateway.config import GatewaySettings
    from gateway.kafka import ensure_topics
    from gateway.keys.records import issued
    from gateway.keys.secrets import hash_key, load_key_secret, new_key, new_key_id
    from schemas.topics import KEYS

    settings = GatewaySettings(bootstrap_servers=bootstrap, topic_prefix=ns.topic_prefix)
    secret = load_key_secret("", secret_file)
    await ensure_topics(settings, [KEYS])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    keys = {}
    try:
        futures = []
        for account in accounts:
            key, key_id = new_key(), new_key_id()
            record = issued(key_id, account, hash_key(secret, key), "bench", datetime.now(timezone.utc))
            futures.append(await producer.send(settings.topic(KEYS), key=key_id.encode(),
                                               value=record.model_dump_json().encode()))
            keys[account] = key
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return keys


async def wait_gateway_has(gateway: ServiceProcess, keys: int, accounts: int, timeout_s: float = 120.0) -> dict:
    """Until the gateway's cache holds `keys` keys and `accounts` statuses (its /health)."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        _status, body = http_get(f"{gateway.url}/health")
        if body.get("keys", 0) >= keys and body.get("accounts", 0) >= accounts:
            return body
        await asyncio.sleep(0.25)
    raise RuntimeError(f"gateway cache not filled in {timeout_s}s: {body}; log: {gateway.log_tail()}")


def chat_body(text: str, model: str = SMALL_MODEL, max_tokens: int = 16) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})


# ---------------------------------------------------------------- 2. overhead

async def drive(session, url: str, bodies: list[bytes], headers: list[dict], total: int, concurrency: int) -> dict:
    """`total` POSTs with `concurrency` in flight (client i sends bodies[i] with headers[i])."""
    latencies, statuses = [], Counter()
    remaining = [total]

    async def client(index: int) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            began = time.perf_counter()
            async with session.post(url, data=bodies[index], headers=headers[index]) as response:
                await response.read()
            elapsed_ms = (time.perf_counter() - began) * 1000
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append(elapsed_ms)

    began = time.perf_counter()
    await asyncio.gather(*(client(index) for index in range(concurrency)))
    return {"latencies": latencies, "statuses": statuses, "seconds": time.perf_counter() - began}


async def overhead(sizes: GatewayBenchSizes, sim: ServiceProcess, gateway: ServiceProcess, keys: list[str]) -> dict:
    import aiohttp

    c = sizes.concurrency
    bodies = [chat_body(f"bench overhead client {index}: write a haiku about quotas") for index in range(c)]
    common = {"Content-Type": "application/json"}
    direct_headers = [{**common, "Authorization": "Bearer sim-key"} for _ in range(c)]
    gateway_headers = [{**common, "Authorization": f"Bearer {keys[index % len(keys)]}"} for index in range(c)]
    targets = {"direct": (f"{sim.url}/v1/chat/completions", direct_headers),
               "gateway": (f"{gateway.url}/v1/chat/completions", gateway_headers)}
    results = {name: {"latencies": [], "statuses": Counter(), "seconds": 0.0} for name in targets}
    per_round = max(1, sizes.requests // OVERHEAD_ROUNDS)
    timeout = aiohttp.ClientTimeout(total=60)
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c), timeout=timeout)
                for name in targets}
    try:
        for name, (url, headers) in targets.items():  # warm-up: connections, caches; not counted
            await drive(sessions[name], url, bodies, headers, c, c)
        for round_index in range(OVERHEAD_ROUNDS):
            order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
            for name in order:
                url, headers = targets[name]
                run = await drive(sessions[name], url, bodies, headers, per_round, c)
                results[name]["latencies"].extend(run["latencies"])
                results[name]["statuses"].update(run["statuses"])
                results[name]["seconds"] += run["seconds"]
    finally:
        for session in sessions.values():
            await session.close()
    out = {"concurrency": c, "upstream_latency_ms": sizes.latency_ms, "requests_per_target": per_round * OVERHEAD_ROUNDS,
           "rounds": OVERHEAD_ROUNDS, "request": f"POST /v1/chat/completions, {SMALL_MODEL}, max_tokens 16, not streamed"}
    for name, result in results.items():
        out[name] = {**summary_ms(result["latencies"]), "statuses": {str(k): v for k, v in result["statuses"].items()},
                     "requests_per_s": round(sum(result["statuses"].values()) / max(result["seconds"], 1e-9), 1)}
    for figure in ("p50", "p99"):
        d, g = out["direct"][f"{figure}_ms"], out["gateway"][f"{figure}_ms"]
        out[f"added_{figure}_ms"] = round(g - d, 2) if d is not None and g is not None else None
    return out


# ---------------------------------------------------------------- 3. stop-service as a client sees it

async def exhaust_and_poll(session, gateway: ServiceProcess, account: str, key: str, remaining: int) -> dict:
    """One exhausting request, then polls every POLL_INTERVAL_S until a 429 `exhausted`."""
    url = f"{gateway.url}/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    # Input cache misses costing at least twice what is left, even at the off-peak coefficient.
    tokens = math.ceil(2 * remaining / (PRO_RATIO_MISS * OFFPEAK_COEFFICIENT)) + 16
    prompt = f"{account} " + "word " * ((tokens * 4) // 5)  # the simulator: 1 token per 4 bytes
    began = time.perf_counter()
    async with session.post(url, data=chat_body(prompt, EXHAUST_MODEL, 16), headers=headers) as response:
        await response.read()
        status = response.status
    replied = time.perf_counter()
    result = {"exhausting_status": status, "exhausting_ms": (replied - began) * 1000, "prompt_tokens_target": tokens,
              "first_ms": None, "first_reason": None, "exhausted_ms": None, "polls": 0, "served_polls": 0}
    if status != 200:
        return result
    poll = chat_body("hi", SMALL_MODEL, 1)
    deadline = replied + STOP_TIMEOUT_S
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        async with session.post(url, data=poll, headers=headers) as response:
            body = await response.read()
            code = response.status
        answered = time.perf_counter()
        result["polls"] += 1
        if code == 429:
            reason = (orjson.loads(body).get("error") or {}).get("code")
            if result["first_ms"] is None:
                result["first_ms"], result["first_reason"] = (answered - replied) * 1000, reason
            if reason == "exhausted":
                result["exhausted_ms"] = (answered - replied) * 1000
                break
        elif code == 200:
            result["served_polls"] += 1
        await asyncio.sleep(max(0.0, sent + POLL_INTERVAL_S - time.perf_counter()))
    return result


async def stop_service(sizes: GatewayBenchSizes, gateway: ServiceProcess, keys: dict[str, str],
                       remaining: dict[str, int]) -> dict:
    import aiohttp

    semaphore = asyncio.Semaphore(sizes.parallel)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=sizes.parallel * 2),
                                     timeout=timeout) as session:
        async def one(account: str) -> dict:
            async with semaphore:
                return await exhaust_and_poll(session, gateway, account, keys[account], remaining[account])
        runs = await asyncio.gather(*(one(account) for account in remaining))
    served = [r for r in runs if r["exhausting_status"] == 200]
    return {"exhaustions": len(runs), "parallel": sizes.parallel, "poll_interval_ms": POLL_INTERVAL_S * 1000,
            "exhausting_statuses": dict(Counter(str(r["exhausting_status"]) for r in runs)),
            "exhausting_request": summary_ms([r["exhausting_ms"] for r in served]),
            "first_refusal": summary_ms([r["first_ms"] for r in served if r["first_ms"] is not None]),
            "first_refusal_reasons": dict(Counter(r["first_reason"] for r in served if r["first_reason"])),
            "exhausted_refusal": summary_ms([r["exhausted_ms"] for r in served if r["exhausted_ms"] is not None]),
            "timeouts": sum(1 for r in served if r["exhausted_ms"] is None),
            "polls": sum(r["polls"] for r in runs), "served_polls": sum(r["served_polls"] for r in runs)}


# ---------------------------------------------------------------- the section

async def gateway_section(bootstrap: str, work_dir: Path, sizes: GatewayBenchSizes, log) -> dict:
    """The decision timing, then the stack (worker, upstream-sim, gateway) for overhead and stop."""
    from bench.pipeline import produce_all, recent_day, wait_accounts_active

    decision = decision_timing(sizes.cache_keys, sizes.decisions)
    log(f"gateway: cache decision p50 {decision['p50_us']} us, p99 {decision['p99_us']} us, "
        f"max {decision['max_us']} us ({decision['decisions']:,} decisions, {decision['keys']:,} keys)")
    ns = Namespace()
    data_dir = work_dir / f"{ns.name}-gateway"
    worker = WorkerProcess(bootstrap, ns, data_dir / "worker").start()
    services: list[ServiceProcess] = []
    try:
        worker.wait_healthy(timeout_s=120)
        day, now = recent_day(), datetime.now(timezone.utc)
        heavy = [f"gw-ovh-{index}" for index in range(sizes.concurrency)]
        victims = [f"gw-stop-{index}" for index in range(sizes.exhaustions)]
        await produce_all(bootstrap, ns.topic("plans"), [
            {"type": "plan.purchased", "event_id": f"buy-{a}", "occurred_at": stamp(day), "account_id": a,
             "tier": "max" if a in heavy else "lite", "period": "monthly", "currency": "USD", "auto_renew": False}
            for a in heavy + victims])
        spend_at = max(peak_instant_before(now), day + timedelta(hours=1))
        output = (LITE_CREDITS - PRESPEND_LEFT) // PRO_RATIO_OUTPUT
        await produce_all(bootstrap, ns.topic("usage"), [
            {"type": "usage", "event_id": f"prespend-{v}", "occurred_at": stamp(spend_at), "account_id": v,
             "model": EXHAUST_MODEL.lower(), "input_cache_hit_tokens": 0, "input_cache_miss_tokens": 0,
             "output_tokens": output, "key_id": "k", "cluster": "sgp", "protocol": "openai"} for v in victims])
        await wait_accounts_active(worker, heavy + victims)
        remaining = {}
        for victim in victims:
            for _ in range(600):
                body = http_get(f"{worker.url}/accounts/{victim}/quota")[1]
                if body.get("credits_used") not in (None, "0"):
                    remaining[victim] = int(Decimal(body["credits_remaining"]))
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the pre-spend of {victim} was not applied: {body}")
        keys = await issue_keys(bootstrap, ns, data_dir / "key-secret", heavy + victims)
        sim = upstream_sim(data_dir, "--latency-ms", str(sizes.latency_ms)).start()
        services.append(sim)
        sim.wait_ready()
        gateway = gateway_process(bootstrap, ns, worker.url, sim.url, data_dir).start()
        services.append(gateway)
        gateway.wait_ready()
        await wait_gateway_has(gateway, len(keys), len(keys))
        log(f"gateway: stack ready ({len(heavy)} max-plan and {len(victims)} pre-spent lite accounts, "
            f"upstream-sim --latency-ms {sizes.latency_ms})")
        over = await overhead(sizes, sim, gateway, [keys[a] for a in heavy])
        log(f"gateway overhead at {over['concurrency']} concurrent: direct p50 {over['direct']['p50_ms']} "
            f"p99 {over['direct']['p99_ms']} ms, gateway p50 {over['gateway']['p50_ms']} p99 {over['gateway']['p99_ms']} "
            f"ms: added p50 {over['added_p50_ms']} ms, p99 {over['added_p99_ms']} ms")
        live = None
        try:
            import urllib.request
            with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
                live = parse_histogram(response.read().decode(), "tokenplan_gateway_decision_seconds")
            log(f"gateway /metrics decision histogram: {live['count']:,} decisions, mean {live['mean_us']} us, "
                f"p99 <= {live['p99_le_us']} us")
        except OSError as error:
            log(f"gateway /metrics not scraped: {error}")
        stop = await stop_service(sizes, gateway, keys, remaining)
        log(f"gateway stop-service ({stop['exhaustions']} exhaustions, {stop['parallel']} at a time): first 429 p50 "
            f"{stop['first_refusal']['p50_ms']} p99 {stop['first_refusal']['p99_ms']} ms "
            f"({stop['first_refusal_reasons']}); 429 exhausted p50 {stop['exhausted_refusal']['p50_ms']} "
            f"p99 {stop['exhausted_refusal']['p99_ms']} max {stop['exhausted_refusal']['max_ms']} ms; "
            f"{stop['timeouts']} timeouts")
        return {"decision": decision, "overhead": over, "live_decision": live, "stop": stop}
    finally:
        for service in reversed(services):
            service.stop()
        worker.stop()
