"""The one faust.App of tokenplan, configured from the environment.

Importing this module creates the app (faust registers agents, tables and pages on
it at import time); `tokenplan worker` imports it and runs a faust Worker.
"""
from __future__ import annotations

import faust

from schemas import topics
from streams.config import Settings
from streams.topic_admin import TopicSpec

settings = Settings.from_env()


def create_app(config: Settings) -> faust.App:
    """A faust.App for `config`; raw bytes in and out, so we decode and encode ourselves."""
    return faust.App(
        config.app_id,
        broker=config.broker_urls,
        store="rocksdb://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        web_host=config.web_host,
        web_port=config.web_port,
        web_bind=config.web_host,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
    )


app = create_app(settings)


def declare_topic(short_name: str) -> faust.TopicT:
    """A topic with the prefix and the explicit partition count of the settings.

    The worker creates it before faust starts (streams.topic_admin); every topic
    of ours shares one partition count, so inputs stay co-partitioned.
    """
    return app.topic(
        settings.topic(short_name),
        partitions=settings.partitions,
        replicas=settings.replication,
        key_type=bytes,
        value_type=bytes,
    )


usage_topic = declare_topic(topics.USAGE)
plans_topic = declare_topic(topics.PLANS)


def topic_specs() -> list[TopicSpec]:
    """Every topic the worker reads or writes, for streams.topic_admin.ensure_topics."""
    return [TopicSpec(settings.topic(name), settings.partitions) for name in topics.ALL_INPUTS]

# Register agents and web views on the app (they import `app` from here).
from streams import web  # noqa: E402,F401
from streams.agents import ingest  # noqa: E402,F401
