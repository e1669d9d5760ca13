"""The one faust.App of tokenplan, configured from the environment.

Importing this module creates the app, its topics and tables (faust registers agents,
tables and pages at import time); `tokenplan worker` imports it and runs a Worker.
"""
from __future__ import annotations

import faust

from schemas import topics
from streams import faust_fixes
from streams.config import Settings
from streams.ledger import load_catalog
from streams.topic_admin import TopicSpec

settings = Settings.from_env()
catalog = load_catalog()
limits = settings.limits


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
        canonical_url=config.advertised_url,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=config.producer_linger_s,
        broker_commit_interval=config.commit_interval_s,
        broker_session_timeout=config.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, config.session_timeout_ms / 3000),
        autodiscover=False,
    )


faust_fixes.apply()  # before the app's consumer exists: faust-streaming #606
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


plans_topic = declare_topic(topics.PLANS)
clock_topic = declare_topic(topics.CLOCK)
#: What the ledger agent consumes: the sequenced log and the clock ticks (co-partitioned).
ledger_inputs = app.topic(settings.topic(topics.LEDGER_LOG), settings.topic(topics.CLOCK),
                          key_type=bytes, value_type=bytes)
out_topics: dict[str, faust.TopicT] = {name: declare_topic(name) for name in topics.ALL_OUTPUTS}

#: The ledger's keyed state, one changelog for all of it (streams.agents.state_store):
#: account records, partition records, applied ids and usage entries.
accounts_table = app.Table("accounts", partitions=settings.partitions, key_type=bytes, value_type=bytes)


def topic_specs() -> list[TopicSpec]:
    """Every topic the worker reads or writes, for streams.topic_admin.ensure_topics."""
    names = (*topics.ALL_INPUTS, topics.LEDGER_LOG, topics.CLOCK, *topics.ALL_OUTPUTS)
    specs = [TopicSpec(settings.topic(name), settings.partitions, topics.TOPIC_CONFIGS.get(name, {})) for name in names]
    # Changelogs too, compacted as faust would make them: created before the group forms.
    specs += [TopicSpec(table.changelog_topic.get_topic_name(), settings.partitions, {"cleanup.policy": "compact"})
              for table in (accounts_table,)]
    # faust's leader-election topic (one partition), so the first join finds it.
    specs.append(TopicSpec(f"{settings.app_id}-__assignor-__leader", 1))
    return specs


def kafka_producer():
    """The aiokafka producer faust started; the agents' `Outbox` sends record batches
    through it (one producer per worker, the same idempotence and acks settings)."""
    return app.producer._ensure_producer()


# Register agents and web views on the app (they import `app` from here).
from streams import web  # noqa: E402,F401
from streams.agents import ledger, status  # noqa: E402,F401

if settings.sequencer == "inline":
    from streams.agents.sequencer import Sequencer  # noqa: E402

    app.service(Sequencer(settings))
