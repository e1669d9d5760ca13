"""Skeleton ingest agents: consume the input topics and count what arrived.

The streaming ledger replaces the counting with decode -> core -> encode; the counters
stay as the worker's liveness evidence in GET /health.
"""
from __future__ import annotations

from streams.agents import stats
from streams.app import app, plans_topic, usage_topic

#: Events taken from the stream at once (faust stream.take); see Settings for tuning.
BATCH_EVENTS_MAX = 500
BATCH_WAIT_S = 0.05


@app.agent(usage_topic, concurrency=1)
async def ingest_usage(stream) -> None:
    async for batch in stream.take(BATCH_EVENTS_MAX, within=BATCH_WAIT_S):
        stats.count(usage_topic.get_topic_name(), len(batch))


@app.agent(plans_topic, concurrency=1)
async def ingest_plans(stream) -> None:
    async for batch in stream.take(BATCH_EVENTS_MAX, within=BATCH_WAIT_S):
        stats.count(plans_topic.get_topic_name(), len(batch))
