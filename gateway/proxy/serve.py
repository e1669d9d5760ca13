"""The gateway's composition root: build its parts, start them in order, serve, stop."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone

import aiohttp
from aiohttp import web

from gateway.catalog import load_plan_models
from gateway.config import GatewaySettings
from gateway.kafka import ensure_topics
from gateway.keys.secrets import load_key_secret
from gateway.policy.cadence import CadenceTracker
from gateway.policy.classify import load_policy_rules
from gateway.proxy.app import Gateway
from gateway.proxy.metrics import GatewayMetrics
from gateway.proxy.publisher import Publisher
from gateway.proxy.spool import Spool
from gateway.quota.cache import QuotaCache
from gateway.quota.follower import CacheFollower
from gateway.quota.lookup import WorkerLookup
from gateway.quota.spend import SpendBook
from schemas.topics import KEY_STATUS, KEYS, POLICY, UNMETERED

__all__ = ["build", "running"]

logger = logging.getLogger(__name__)

#: How long start-up waits for the cache to read both topics to their end.
CACHE_READY_TIMEOUT_S = 60.0


def build(settings: GatewaySettings) -> Gateway:
    """The parts, not yet started."""
    cache = QuotaCache(settings.stale_after_ms, settings.stale_policy, SpendBook(settings.unconfirmed_ttl_ms / 1000))
    return Gateway(settings=settings, secret=load_key_secret(settings.key_secret, settings.key_secret_file),
                   plan=load_plan_models(datetime.now(timezone.utc)), cache=cache,
                   follower=CacheFollower(settings, cache),
                   publisher=Publisher(settings, Spool(settings.spool_dir, settings.spool_bytes_max)),
                   metrics=GatewayMetrics(), rules=load_policy_rules(datetime.now(timezone.utc)),
                   cadence=CadenceTracker())


@contextlib.asynccontextmanager
async def running(settings: GatewaySettings):
    """Start topics, cache, publisher and HTTP; yield (gateway, url); stop in reverse order."""
    gateway = build(settings)
    await ensure_topics(settings, [KEYS, KEY_STATUS, POLICY, UNMETERED])
    await gateway.follower.start()
    tasks = [asyncio.create_task(gateway.follower.run(), name="quota-cache")]
    timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_s, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as upstream, aiohttp.ClientSession() as lookups:
        gateway.upstream, gateway.lookup = upstream, WorkerLookup(settings, lookups)
        await gateway.publisher.start()
        tasks.append(asyncio.create_task(gateway.publisher.run(), name="usage-spool"))
        try:
            await asyncio.wait_for(gateway.follower.ready.wait(), CACHE_READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise SystemExit(f"the quota cache did not catch up with its topics within {CACHE_READY_TIMEOUT_S}s")
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.add_routes(gateway.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            yield gateway, f"http://{settings.host}:{port}"
        finally:
            await runner.cleanup()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await gateway.publisher.drain()
            await gateway.publisher.stop()
            await gateway.follower.stop()
