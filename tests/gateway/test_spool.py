"""The usage spool: nothing lost while Kafka is away; bounded; drained in order with the same bytes."""
from __future__ import annotations

import uuid

import orjson
import pytest

from deploy.localrun import Namespace
from gateway.config import GatewaySettings
from gateway.kafka import ensure_topics
from gateway.proxy.publisher import Publisher
from gateway.proxy.spool import Spool, SpoolFull
from schemas.topics import USAGE
from tests.support.kafka_io import consume_all


def test_the_spool_keeps_records_in_order_and_refuses_past_its_bound(tmp_path):
    spool = Spool(tmp_path, bytes_max=400)
    spool.append("t", b"acct-1", b'{"n": 1}')
    spool.append("t", b"acct-2", b'{"n": 2}')
    size = spool.size()
    assert spool.records(size) == [("t", b"acct-1", b'{"n": 1}'), ("t", b"acct-2", b'{"n": 2}')]
    with pytest.raises(SpoolFull):
        spool.append("t", b"k", b"x" * 400)
    spool.append("t", b"acct-3", b'{"n": 3}')  # arrives while the first two are being drained
    spool.clear(size)
    assert spool.records(spool.size()) == [("t", b"acct-3", b'{"n": 3}')]


def test_a_torn_last_line_from_a_crash_is_skipped(tmp_path):
    spool = Spool(tmp_path, bytes_max=10_000)
    spool.append("t", b"k", b'{"n": 1}')
    with open(spool.path, "ab") as handle:
        handle.write(b'{"topic": "t", "key": "az')
    assert len(spool.records(spool.size())) == 1


@pytest.mark.integration
async def test_usage_sent_while_kafka_is_unreachable_arrives_later_with_the_same_ids(kafka_bootstrap, tmp_path):
    namespace = Namespace()
    away = GatewaySettings(bootstrap_servers="127.0.0.1:1", topic_prefix=namespace.topic_prefix,
                           spool_dir=tmp_path, send_timeout_ms=1000)
    publisher = Publisher(away, Spool(tmp_path, away.spool_bytes_max))
    await publisher.start()
    events = [{"event_id": f"spooled-{i}-{uuid.uuid4().hex[:6]}", "account_id": f"acct-{i % 3}"} for i in range(20)]
    for event in events:
        position = await publisher.publish(namespace.topic(USAGE), event["account_id"].encode(), orjson.dumps(event))
        assert position is None, "no broker: spooled"
    await publisher.stop()
    assert publisher.spooled == 20

    back = GatewaySettings(bootstrap_servers=kafka_bootstrap, topic_prefix=namespace.topic_prefix, spool_dir=tmp_path)
    await ensure_topics(back, [USAGE])
    drainer = Publisher(back, Spool(tmp_path, back.spool_bytes_max))  # a restarted gateway finds the spool
    await drainer.start()
    try:
        assert await drainer.drain() == 20
        assert drainer.spool.size() == 0
        position = await drainer.publish(namespace.topic(USAGE), b"acct-0", b'{"event_id": "after"}')
        assert position is not None, "an empty spool sends directly again"
    finally:
        await drainer.stop()
    received = await consume_all(kafka_bootstrap, namespace.topic(USAGE), idle_s=1.0)
    by_account: dict[bytes, list[str]] = {}
    for key, value in received:
        by_account.setdefault(key, []).append(orjson.loads(value)["event_id"])
    for account in (b"acct-0", b"acct-1", b"acct-2"):
        expected = [e["event_id"] for e in events if e["account_id"].encode() == account]
        assert by_account[account][:len(expected)] == expected, "same ids, in order per account"
