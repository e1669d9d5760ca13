"""The gateway's Kafka plumbing: topics it needs, reading a compacted topic whole, producers.

Why its own and not the worker's `topic_admin`: the gateway kit imports no `streams`
(a gateway team adopts it without the ledger). It only creates what it owns (`keys`,
`unmetered`) and waits for topics the worker creates (`usage`, `quota-status`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.config import GatewaySettings
from schemas.topics import TOPIC_CONFIGS

__all__ = ["ensure_topics", "idempotent_producer", "read_whole", "topic_partitions"]

logger = logging.getLogger(__name__)

#: How long to wait for a created topic to be listed by the broker.
TOPIC_READY_TIMEOUT_S = 30.0


async def ensure_topics(settings: GatewaySettings, short_names: list[str]) -> None:
    """Create the missing ones of `short_names` (with their schemas.topics configs); wait until listed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="tokenplan-gateway-admin")
    await admin.start()
    try:
        names = {settings.topic(name): name for name in short_names}
        missing = [full for full in names if full not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics([NewTopic(full, settings.partitions, settings.replication,
                                                topic_configs=TOPIC_CONFIGS.get(names[full], {}))
                                       for full in missing])
        deadline = asyncio.get_running_loop().time() + TOPIC_READY_TIMEOUT_S
        while not set(names) <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"topics not listed by the broker after {TOPIC_READY_TIMEOUT_S}s: {missing}")
            await asyncio.sleep(0.1)
    except Exception as error:
        if isinstance(error, SystemExit):
            raise
        raise SystemExit(f"Kafka at {settings.bootstrap_servers} refused the topic check: {error}") from error
    finally:
        await admin.close()


def idempotent_producer(settings: GatewaySettings, client_id: str) -> AIOKafkaProducer:
    """acks=all and idempotence: a retried send is written once, in order per partition."""
    return AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, client_id=client_id,
                            enable_idempotence=True, acks="all", linger_ms=1)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[TopicPartition]:
    """The partitions of `topic` once its metadata is known (it may be created right now)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        # add_topic: the only way aiokafka refreshes the cluster metadata of a consumer
        # that has not subscribed (`topics()` fetches a copy and drops it).
        await consumer._client.add_topic(topic)
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"topic {topic} does not exist (is the worker running? `tokenplan worker` creates it)")
        await asyncio.sleep(0.2)


async def read_whole(settings: GatewaySettings, short_name: str) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from its start to its end as of now (no group, no commit)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, settings.topic(short_name))
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record.key, record.value
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
