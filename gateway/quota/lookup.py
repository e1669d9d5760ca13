"""The worker's lookup, for an account the cache has no status for (bought seconds ago).

Bounded: `lookup_attempts` tries, each within `lookup_timeout_ms`, waiting
`lookup_backoff_ms` doubled after each 503 (the worker recovering or rebalancing) or
connection error. None when every try failed: the caller applies the stale policy.
"""
from __future__ import annotations

import asyncio
import logging

import aiohttp

from gateway.config import GatewaySettings
from gateway.quota.entries import StatusEntry, parse_status

__all__ = ["WorkerLookup"]

logger = logging.getLogger(__name__)


class WorkerLookup:
    """GET {worker}/accounts/{id}/quota with bounded retries."""

    def __init__(self, settings: GatewaySettings, session: aiohttp.ClientSession) -> None:
        self.settings, self.session = settings, session
        self.failures = 0

    async def status(self, account_id: str) -> StatusEntry | None:
        settings = self.settings
        wait_s = settings.lookup_backoff_ms / 1000
        timeout = aiohttp.ClientTimeout(total=settings.lookup_timeout_ms / 1000)
        url = f"{settings.worker_url}/accounts/{account_id}/quota"
        for attempt in range(settings.lookup_attempts):
            try:
                async with self.session.get(url, timeout=timeout) as response:
                    if response.status == 200:
                        return parse_status(await response.read())
                    logger.info("lookup of %s: HTTP %d (try %d)", account_id, response.status, attempt + 1)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError) as error:
                logger.info("lookup of %s failed: %s (try %d)", account_id, type(error).__name__, attempt + 1)
            if attempt + 1 < settings.lookup_attempts:
                await asyncio.sleep(wait_s)
                wait_s *= 2
        self.failures += 1
        return None
