"""The faust app, its topics and its table, built for one `Settings` (no module state).

`streams.worker.main.build` calls `wire` once; the agents, the clock and the web views
are handed the `Wiring` it returns. Importing this module creates nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import faust

from schemas import topics
from streams.config import Settings
from streams.ledger import Catalog
from streams.worker import rocksdb_memory
from streams.worker.topic_admin import TopicSpec


def create_app(config: Settings) -> faust.App:
    """A faust.App for `config`; raw bytes in and out, so we decode and encode ourselves."""
    return faust.App(
        config.app_id,
        broker=config.broker_urls,
        store=rocksdb_memory.STORE_URL,
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
        stream_buffer_maxsize=config.stream_buffer_max,
        broker_commit_interval=config.commit_interval_s,
        broker_session_timeout=config.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, config.session_timeout_ms / 3000),
        autodiscover=False,
    )


@dataclass
class Wiring:
    """The app and what hangs on it: topics, the table, the settings and the catalog."""

    settings: Settings
    catalog: Catalog
    app: faust.App
    plans_topic: faust.TopicT
    clock_topic: faust.TopicT
    #: What the applier consumes: the sequenced log and the clock ticks (co-partitioned).
    applier_inputs: faust.TopicT
    out_topics: dict[str, faust.TopicT]
    #: The ledger's keyed state, one changelog for all of it (streams.processing.state_store).
    accounts_table: faust.types.tables.TableT
    #: Usage-policy inputs (violations, reinstatements) and the policy's state per key.
    policy_topic: faust.TopicT
    policy_table: faust.types.tables.TableT

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the worker reads or writes, for topic_admin.ensure_topics."""
        settings = self.settings
        names = (*topics.ALL_INPUTS, topics.LEDGER_LOG, topics.CLOCK, *topics.ALL_OUTPUTS, topics.POLICY,
                 *topics.POLICY_OUTPUTS)
        specs = [TopicSpec(settings.topic(name), settings.partitions, topics.TOPIC_CONFIGS.get(name, {}))
                 for name in names]
        # The changelog too, compacted as faust would make it: created before the group forms.
        for table in (self.accounts_table, self.policy_table):
            specs.append(TopicSpec(table.changelog_topic.get_topic_name(), settings.partitions,
                                   {"cleanup.policy": "compact"}))
        # faust's leader-election topic (one partition), so the first join finds it.
        specs.append(TopicSpec(f"{settings.app_id}-__assignor-__leader", 1))
        return specs

    def kafka_producer(self):
        """The aiokafka producer faust started; units of work send record batches through it."""
        return self.app.producer._ensure_producer()


def wire(settings: Settings, catalog: Catalog) -> Wiring:
    """The app for `settings`, with the topics (explicit partition counts) and the table."""
    rocksdb_memory.register()
    app = create_app(settings)
    memory = rocksdb_memory.SharedMemory(settings.rocksdb_write_buffer_bytes, settings.rocksdb_block_cache_bytes)

    def declare(short_name: str) -> faust.TopicT:
        return app.topic(settings.topic(short_name), partitions=settings.partitions,
                         replicas=settings.replication, key_type=bytes, value_type=bytes)

    return Wiring(
        settings=settings, catalog=catalog, app=app,
        plans_topic=declare(topics.PLANS), clock_topic=declare(topics.CLOCK),
        applier_inputs=app.topic(settings.topic(topics.LEDGER_LOG), settings.topic(topics.CLOCK),
                                 key_type=bytes, value_type=bytes),
        out_topics={name: declare(name) for name in (*topics.ALL_OUTPUTS, *topics.POLICY_OUTPUTS)},
        accounts_table=app.Table("accounts", partitions=settings.partitions, key_type=bytes, value_type=bytes,
                                 options=rocksdb_memory.table_options(memory, rocksdb_memory.MEMTABLE_BLOOM_RATIO)),
        policy_topic=declare(topics.POLICY),
        policy_table=app.Table("key-policy", partitions=settings.partitions, key_type=bytes, value_type=bytes,
                               options=rocksdb_memory.table_options(memory)),
    )
