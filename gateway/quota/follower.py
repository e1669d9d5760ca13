"""Follow `tokenplan.keys`, `tokenplan.key-status` and `tokenplan.quota-status` into the QuotaCache.

Both topics are read from the beginning at start-up (they are compacted: one record
per key and per account survives), then followed. No consumer group: every gateway
reads everything, so any gateway can answer for any key. The cache is fresh when
each partition's position has reached the broker's high-water mark; `caught_up_at_ms`
is the oldest of the partitions' last fetch times at that moment.
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.config import GatewaySettings
from gateway.kafka import topic_partitions
from gateway.keys.registry import decode_key_record
from gateway.quota.cache import QuotaCache
from gateway.quota.entries import KeyEntry, parse_status
from schemas.topics import KEY_STATUS, KEYS, QUOTA_STATUS, USAGE

__all__ = ["CacheFollower"]

logger = logging.getLogger(__name__)

#: Broker long-poll wait of the follower's fetches: bounds how stale an idle cache looks.
FETCH_MAX_WAIT_MS = 100


class CacheFollower:
    """The task that keeps a QuotaCache up to date; `ready` is set once it caught up at start."""

    def __init__(self, settings: GatewaySettings, cache: QuotaCache) -> None:
        self.settings, self.cache = settings, cache
        self.ready = asyncio.Event()
        self.records = 0
        self.invalid = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS, client_id="tokenplan-gateway-cache")
        await consumer.start()
        self._consumer = consumer
        self._partitions = [tp for name in (KEYS, KEY_STATUS, QUOTA_STATUS)
                            for tp in await topic_partitions(consumer, self.settings.topic(name))]
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def run(self) -> None:
        """Apply records until cancelled; errors of one record are logged and counted."""
        assert self._consumer is not None, "start() first"
        keys_topic, usage_topic = self.settings.topic(KEYS), self.settings.topic(USAGE)
        key_status_topic = self.settings.topic(KEY_STATUS)
        while True:
            batches = await self._consumer.getmany(timeout_ms=FETCH_MAX_WAIT_MS * 2, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == key_status_topic:
                        self._apply_key_status(record.value)
                    else:
                        self._apply(tp.topic == keys_topic, record.key, record.value, usage_topic)
            await self._mark_caught_up()

    def _apply_key_status(self, value: bytes | None) -> None:
        self.records += 1
        try:
            body = orjson.loads(value) if value is not None else None
            self.cache.put_key_status(body["key_id"], body["status"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            self.invalid += 1
            logger.warning("skipping an invalid key-status record: %s", error)

    def _apply(self, is_key: bool, key: bytes | None, value: bytes | None, usage_topic: str) -> None:
        self.records += 1
        if is_key:
            entry = decode_key_record(value)
            if entry is None:
                self.invalid += value is not None
                return
            self.cache.put_key(entry.key_hash, KeyEntry.of(entry))
            return
        if key is None or value is None:
            return
        try:
            self.cache.put_status(key.decode("utf-8"), parse_status(value), usage_topic)
        except (ValueError, KeyError, TypeError) as error:
            self.invalid += 1
            logger.warning("skipping an invalid quota-status record: %s", error)

    async def _mark_caught_up(self) -> None:
        consumer = self._consumer
        polled = []
        for tp in self._partitions:
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return
            polled.append(consumer.last_poll_timestamp(tp))
        self.cache.caught_up_at_ms = float(min(polled)) if polled else time.time() * 1000
        if not self.ready.is_set():
            self.ready.set()
            logger.info("quota cache ready: %d keys, %d accounts", len(self.cache.keys), len(self.cache.statuses))
