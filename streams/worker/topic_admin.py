"""Create tokenplan's topics before the worker consumes, with explicit partition counts.

Why not leave it to faust: faust creates a source topic while the consumer group is
already forming; the group leader can then assign partitions before the new topic is
in its metadata and silently ignore the topic until the next metadata refresh
(minutes). Creating topics first, and waiting until the broker lists them, removes
that race. An existing topic with another partition count breaks co-partitioning,
so it is refused with a clear message instead of being used.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.config import Settings

logger = logging.getLogger(__name__)

#: How long to wait for created topics to appear in the broker's metadata.
TOPIC_READY_TIMEOUT_S = 30.0


class TopicLayoutError(RuntimeError):
    """An existing topic does not match the layout we need (partition count)."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: full name, partitions, and extra broker configs (cleanup.policy, ...)."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(await admin.list_topics())
    present = [name for name in names if name in existing]
    if not present:
        return {}
    described = await admin.describe_topics(present)
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in described
        if topic.get("error_code", 0) == 0 and topic["partitions"]
    }


async def ensure_topics(settings: Settings, specs: list[TopicSpec]) -> dict[str, int]:
    """Create missing topics, wait until all are listed, check partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        counts = await _partition_counts(admin, [spec.name for spec in specs])
        missing = [spec for spec in specs if spec.name not in counts]
        if missing:
            logger.info("creating topics: %s", ", ".join(spec.name for spec in missing))
            await admin.create_topics(
                [NewTopic(spec.name, spec.partitions, settings.replication, topic_configs=spec.configs) for spec in missing]
            )
        counts = await _wait_listed(admin, specs)
    finally:
        await admin.close()
    _check_partitions(specs, counts)
    return counts


async def _wait_listed(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOPIC_READY_TIMEOUT_S
    names = [spec.name for spec in specs]
    while True:
        counts = await _partition_counts(admin, names)
        if all(name in counts for name in names):
            return counts
        if loop.time() > deadline:
            missing = sorted(set(names) - set(counts))
            raise TopicLayoutError(f"topics not visible after {TOPIC_READY_TIMEOUT_S}s: {missing}")
        await asyncio.sleep(0.1)


def _check_partitions(specs: list[TopicSpec], counts: dict[str, int]) -> None:
    wrong = [f"{spec.name} has {counts[spec.name]} partitions, expected {spec.partitions}" for spec in specs if counts[spec.name] != spec.partitions]
    if wrong:
        raise TopicLayoutError(
            "topic layout mismatch (co-partitioned topics must share one partition count; "
            "set TOKENPLAN_PARTITIONS to match, or recreate the topics): " + "; ".join(wrong)
        )
