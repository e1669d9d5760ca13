"""The worker against the real broker: it starts, creates its topics, consumes, reports."""
from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.localrun import http_get

pytestmark = pytest.mark.integration


async def test_worker_consumes_a_produced_message_and_reports_it(kafka_bootstrap, namespace, start_worker):
    worker = start_worker()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(namespace.topic("usage"), b'{"hello": 1}', key=b"acct-e2e")
        await producer.send_and_wait(namespace.topic("plans"), b'{"hello": 2}', key=b"acct-e2e")
    finally:
        await producer.stop()

    deadline = time.monotonic() + 30
    consumed: dict = {}
    while time.monotonic() < deadline:
        status, body = http_get(f"{worker.url}/health")
        consumed = body.get("consumed", {})
        if consumed.get(namespace.topic("ledger-log")) == 2:
            break
        time.sleep(0.2)
    assert status == 200 and body["status"] == "running"
    # Each input record was sequenced once into the ledger-log and applied once (the sequencer
    # runs in a process of its own: the ledger counts the input events it applied).
    assert consumed == {namespace.topic("ledger-log"): 2}


async def test_worker_creates_input_topics_with_the_configured_partition_count(kafka_bootstrap, namespace, start_worker):
    start_worker(partitions=4)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([namespace.topic("usage"), namespace.topic("plans")])
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    assert partitions == {namespace.topic("usage"): 4, namespace.topic("plans"): 4}
