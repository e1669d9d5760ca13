"""The projector's /metrics (projections.metrics), in process: counted per batch by the
projector's own step (a stub consumer hands it batches), the lag per partition at scrape
time, the webhook failures, and the text served over HTTP parses as Prometheus' format."""
from __future__ import annotations

import asyncio
import socket
from collections import namedtuple
from datetime import timedelta

import aiohttp
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from projections.metrics import ProjectorMetrics, serve
from projections.projector import SOURCE_TOPICS, Projector
from projections.settings import ProjectorSettings
from projections.store import create_schema, open_engine
from tests.projections.builders import T0, balance, package, record, rejected, reset_offsets, usage_object

Message = namedtuple("Message", "offset timestamp value key")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from Prometheus text (parsed by prometheus_client)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class StubConsumer:
    """What Projector._step uses of AIOKafkaConsumer: one prepared batch per getmany."""

    def __init__(self, batches: list[dict], highwater: dict[TopicPartition, int]) -> None:
        self.batches, self._highwater, self.committed = list(batches), highwater, []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwater)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._highwater.get(partition)

    async def position(self, partition: TopicPartition) -> int:
        return 0

    async def commit(self, offsets) -> None:
        self.committed.append(offsets)


class StubProducer:
    """What Projector._publish uses of AIOKafkaProducer: send() -> an acknowledged future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes):
        self.sent.append((topic, key))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def as_batch(records) -> dict:
    batch: dict = {}
    for r in records:
        batch.setdefault(TopicPartition(r.topic, r.partition), []).append(Message(r.offset, r.timestamp_ms, r.value,
                                                                                  r.key))
    return batch


def history() -> list:
    """A purchase, charges crossing 80 % and 90 % of a 1000-credit package, a fact delivered twice, a dead letter."""
    reset_offsets()
    pkg = package(limit="1000")
    records = [record("balance-changed", balance("buy", T0, "0", cause_type="plan.purchased", pkg=pkg, amount="6.3"))]
    for index, used in enumerate(("500", "850", "950")):
        records.append(record("balance-changed", balance(f"use-{index}", T0 + timedelta(hours=index + 1), used, "100",
                                                         pkg=pkg, usage=usage_object())))
    records.append(record("balance-changed", balance("use-0", T0 + timedelta(hours=1), "500", "100", pkg=pkg,
                                                     usage=usage_object())))  # the ledger published it again
    records.append(record("rejected", rejected("invalid_event", "bad-1", 7)))
    return records


def test_counted_per_batch_and_lag_at_scrape_time():
    async def scenario() -> tuple[str, list, Projector]:
        engine = open_engine("sqlite://")
        create_schema(engine)
        projector = Projector(ProjectorSettings(), engine)
        records = history()
        first, second = records[:2], records[2:]
        balance_tp = TopicPartition("tokenplan.balance-changed", 0)
        rejected_tp = TopicPartition("tokenplan.rejected", 0)
        projector.consumer = StubConsumer([as_batch(first), as_batch(second)],
                                          {balance_tp: 9, rejected_tp: 1, TopicPartition("tokenplan.rejected", 1): 3})
        projector.producer = StubProducer()
        projector.next_offsets[("tokenplan.rejected", 1)] = 2  # sought there on assignment
        commits = []
        projector.on_commit = lambda batch, at: commits.append((len(batch), at))
        assert await projector._step() == 2 and await projector._step() == 4
        assert await projector._step() == 0  # nothing fetched: nothing counted
        return projector.metrics.exposition().decode(), commits, projector

    text, commits, projector = asyncio.run(scenario())
    values = samples(text)
    assert values[("tokenplan_projector_batches_total", ())] == 2
    assert values[("tokenplan_projector_facts_applied_total", (("topic", "balance-changed"),))] == 4
    assert values[("tokenplan_projector_facts_applied_total", (("topic", "rejected"),))] == 1
    for topic in SOURCE_TOPICS:  # every topic's series exists from the start
        assert ("tokenplan_projector_facts_applied_total", (("topic", topic),)) in values
    assert values[("tokenplan_projector_duplicates_total", ())] == 1
    assert values[("tokenplan_projector_alerts_total", (("kind", "quota.threshold"), ("threshold", "80")))] == 1
    assert values[("tokenplan_projector_alerts_total", (("kind", "quota.threshold"), ("threshold", "90")))] == 1
    assert values[("tokenplan_projector_alerts_total", (("kind", "quota.threshold"), ("threshold", "100")))] == 0
    assert values[("tokenplan_projector_batch_seconds_count", ())] == 2
    assert values[("tokenplan_projector_batch_seconds_bucket", (("le", "+Inf"),))] == 2
    # Lag: high-water minus the next offset stored with the rows (5 balance-changed records folded).
    assert values[("tokenplan_projector_lag", (("partition", "0"), ("topic", "balance-changed")))] == 9 - 5
    assert values[("tokenplan_projector_lag", (("partition", "0"), ("topic", "rejected")))] == 0
    assert values[("tokenplan_projector_lag", (("partition", "1"), ("topic", "rejected")))] == 1
    assert values[("tokenplan_projector_webhook_failures_total", ())] == 0
    # The commit hook: once per batch, with its records.
    assert [count for count, _at in commits] == [2, 4] and commits[0][1] <= commits[1][1]
    assert projector.next_offsets[("tokenplan.balance-changed", 0)] == 5
    assert len(projector.producer.sent) == 2  # the 80 % and 90 % alerts went out


def test_webhook_failures_come_from_the_sender_and_no_label_names_an_account():
    metrics = ProjectorMetrics(SOURCE_TOPICS, (80, 90, 100))
    failures = {"n": 0}
    metrics.register_scrape(lambda: [("quota-status", 3, 12)], lambda: failures["n"])
    failures["n"] = 4
    metrics.batch_committed({"quota-status": 3}, 0, [("quota.threshold", 100)] * 2 + [("key.suspended", None)],
                            0.02)
    text = metrics.exposition().decode()
    values = samples(text)
    assert values[("tokenplan_projector_webhook_failures_total", ())] == 4
    assert values[("tokenplan_projector_alerts_total", (("kind", "quota.threshold"), ("threshold", "100")))] == 2
    assert values[("tokenplan_projector_alerts_total", (("kind", "key.suspended"), ("threshold", "")))] == 1
    assert values[("tokenplan_projector_alerts_total", (("kind", "policy.warning"), ("threshold", "")))] == 0
    assert values[("tokenplan_projector_lag", (("partition", "3"), ("topic", "quota-status")))] == 12
    assert values[("tokenplan_projector_batch_seconds_bucket", (("le", "0.025"),))] == 1
    assert values[("tokenplan_projector_batch_seconds_bucket", (("le", "0.01"),))] == 0
    label_names = {name for family in text_string_to_metric_families(text) for s in family.samples for name in s.labels}
    assert label_names <= {"topic", "partition", "kind", "threshold", "le"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_get_metrics_over_http_and_a_taken_port_is_skipped_not_fatal():
    async def scenario() -> tuple[int, str, str, str | None]:
        metrics = ProjectorMetrics(SOURCE_TOPICS, (80,))
        metrics.batch_committed({"balance-changed": 7}, 2, [("quota.threshold", 80)], 0.3)
        port = free_port()
        runner = await serve(metrics, port)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    status, kind, body = response.status, response.headers["Content-Type"], await response.text()
            # A second projector on the same port says so and runs without a server.
            lines: list[str] = []
            other = Projector(ProjectorSettings(metrics_port=port), open_engine("sqlite://"))
            other.say = lines.append
            assert await other._serve_metrics() is None
        finally:
            await runner.cleanup()
        return status, kind, body, lines[0] if lines else None

    status, kind, body, said = asyncio.run(scenario())
    assert status == 200 and kind.startswith("text/plain")
    values = samples(body)
    assert values[("tokenplan_projector_facts_applied_total", (("topic", "balance-changed"),))] == 7
    assert values[("tokenplan_projector_duplicates_total", ())] == 2
    assert said is not None and "no /metrics" in said


def test_the_port_setting():
    assert ProjectorSettings.from_env({}).metrics_port == 6071
    assert ProjectorSettings.from_env({"TOKENPLAN_PROJECTOR_METRICS_PORT": "0"}).metrics_port == 0
    assert ProjectorSettings().metrics_port == 0  # built directly (tests, bench): no server unless asked
    try:
        ProjectorSettings.from_env({"TOKENPLAN_PROJECTOR_METRICS_PORT": "70000"})
    except ValueError as error:
        assert "TOKENPLAN_PROJECTOR_METRICS_PORT" in str(error)
    else:
        raise AssertionError("an impossible port is refused")
