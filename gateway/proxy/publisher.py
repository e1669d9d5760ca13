"""Publish the gateway's records: an idempotent producer keyed by account, and the spool.

`publish` returns the record's (partition, offset) once the broker acked it, so the
quota cache can match the status record that shows it; when the broker does not ack
within `send_timeout_ms` (or is unreachable) the record goes to the spool, and the
`run` task re-sends the spool (same bytes, same event id) once the broker is back.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.config import GatewaySettings
from gateway.kafka import idempotent_producer
from gateway.proxy.spool import Spool

__all__ = ["Publisher"]

logger = logging.getLogger(__name__)


class Publisher:
    """Sends records; spools what the broker did not take."""

    def __init__(self, settings: GatewaySettings, spool: Spool) -> None:
        self.settings, self.spool = settings, spool
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0
        self.spooled = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Try to connect; a broker that is away now only means spooling until it is back."""
        await self._connect()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def _connect(self) -> bool:
        if self._producer is not None:
            return True
        producer = idempotent_producer(self.settings, f"tokenplan-gateway-{self.settings.cluster}")
        try:
            await asyncio.wait_for(producer.start(), self.settings.send_timeout_ms / 1000)
        except (KafkaError, OSError, asyncio.TimeoutError) as error:
            logger.warning("Kafka at %s unreachable (%s); usage goes to the spool %s",
                           self.settings.bootstrap_servers, type(error).__name__, self.spool.path)
            await producer.stop()
            return False
        self._producer = producer
        return True

    async def publish(self, topic: str, key: bytes, value: bytes) -> tuple[int, int] | None:
        """(partition, offset) when acked; None when spooled (SpoolFull when that is full too)."""
        if self._producer is not None and self.spool.size() == 0:
            try:
                metadata = await asyncio.wait_for(self._producer.send_and_wait(topic, value=value, key=key),
                                                  self.settings.send_timeout_ms / 1000)
                self.sent += 1
                return metadata.partition, metadata.offset
            except (KafkaError, asyncio.TimeoutError) as error:
                logger.warning("usage send failed (%s); spooled", type(error).__name__)
        self.spool.append(topic, key, value)  # in order behind what is already spooled
        self.spooled += 1
        return None

    async def drain(self) -> int:
        """Re-send the spool in order; the number sent (0 when the broker is still away)."""
        async with self._lock:
            size = self.spool.size()
            if size == 0 or not await self._connect():
                return 0
            records = self.spool.records(size)
            try:
                for topic, key, value in records:
                    await asyncio.wait_for(self._producer.send_and_wait(topic, value=value, key=key),
                                           self.settings.send_timeout_ms / 1000)
            except (KafkaError, asyncio.TimeoutError) as error:
                logger.warning("spool drain stopped (%s); retrying in %d ms", type(error).__name__,
                               self.settings.spool_retry_ms)
                return 0
            self.spool.clear(size)
            self.sent += len(records)
            logger.info("sent %d spooled records", len(records))
            return len(records)

    async def run(self) -> None:
        """Drain the spool every `spool_retry_ms` until cancelled."""
        while True:
            await self.drain()
            await asyncio.sleep(self.settings.spool_retry_ms / 1000)
