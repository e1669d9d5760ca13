"""The worker's metrics in process (no broker): the counting functions fed with fake units,
the scrape-time gauges from fake consumers, the text exposition as Prometheus parses it."""
from __future__ import annotations

import orjson
from aiohttp.test_utils import make_mocked_request
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from schemas import topics
from streams.processing.batch_record import FORMAT_HEADER, InputEvent, encode_batch
from streams.processing.processor import Emit
from streams.processing.records import PartitionRecord, Source, dead_letter
from streams.processing.state_store import partition_key
from streams.worker.main import build
from streams.worker.metrics import STATES, TopicCounter, WorkerMetrics, frame_prefix, ledger_lag, rejection_reason
from tests.worker.test_glue import SETTINGS

USAGE, PLANS = SETTINGS.topic(topics.USAGE), SETTINGS.topic(topics.PLANS)
V2 = [(FORMAT_HEADER, b"2")]


def _metrics() -> WorkerMetrics:
    return WorkerMetrics.for_settings(SETTINGS)


def _v2(offset: int, *sources: str, value: bytes = b'{"type":"usage"}') -> tuple:
    events = [InputEvent(topic, 0, n, b"acct", value) for n, topic in enumerate(sources)]
    return (encode_batch(events), b"acct", V2, offset)


def _v1(offset: int, topic: str) -> tuple:
    headers = [(topics.HEADER_SOURCE_TOPIC, topic.encode()), (topics.HEADER_SOURCE_PARTITION, b"0"),
               (topics.HEADER_SOURCE_OFFSET, b"7")]
    return (b'{"type":"usage"}', b"acct", headers, offset)


def _dead(reason: str) -> Emit:
    return Emit(topics.REJECTED, b"acct", dead_letter(b'{"x": 1}', reason, "why", Source(USAGE, 0, 1), None))


def _samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition, parsed back as Prometheus would read it."""
    text = metrics.exposition().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_frame_prefix_is_how_a_v2_entry_starts():
    assert encode_batch([InputEvent(USAGE, 3, 4, None, b"v")])[4:].startswith(frame_prefix(USAGE))


def test_topic_counter_splits_batches_by_input_topic_and_reads_v1_headers():
    counter = TopicCounter({USAGE: "usage", PLANS: "plans"})
    records = [_v2(0, USAGE, USAGE, PLANS), _v2(1, USAGE), _v1(2, PLANS)]
    assert counter.count(records, 5) == {"usage": 3, "plans": 2}


def test_topic_counter_walks_exactly_when_a_payload_holds_a_frame_prefix():
    counter = TopicCounter({USAGE: "usage", PLANS: "plans"})
    sneaky = b"garbage" + frame_prefix(PLANS) + b"more"
    assert counter.count([_v2(0, USAGE, USAGE, value=sneaky)], 2) == {"usage": 2}


def test_topic_counter_counts_nothing_for_a_broken_batch_and_other_for_a_foreign_topic():
    counter = TopicCounter({USAGE: "usage"})
    broken = (b"TPL2" + frame_prefix(USAGE) + b"\x00", b"acct", V2, 0)  # counted fast, then walked: broken
    assert counter.count([broken], 0) == {}
    assert counter.count([_v2(1, USAGE, "somebody.else")], 2) == {"usage": 1, "other": 1}


def test_rejection_reason_reads_the_dead_letters_first_bytes_and_falls_back_to_json():
    assert rejection_reason(_dead("usage_outside_package").value) == "usage_outside_package"
    assert rejection_reason(orjson.dumps({"reason": "r", "type": "event.rejected"})) == "r"
    assert rejection_reason(b"not json") == "unknown"


def test_a_unit_counts_its_events_by_topic_its_rejections_by_reason_once():
    metrics = _metrics()
    emitted = [Emit(topics.BALANCE_CHANGED, b"acct", b"{}"), _dead("invalid_event"), _dead("invalid_event"),
               _dead("usage_too_late")]
    metrics.count_applied([_v2(10, PLANS, USAGE, USAGE), _v2(11, USAGE)], -1, 4, emitted)
    metrics.unit_durable(0.004)
    samples = _samples(metrics)
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "usage"),))] == 3
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "plans"),))] == 1
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "policy"),))] == 0
    assert samples[("tokenplan_worker_rejections_total", (("reason", "invalid_event"),))] == 2
    assert samples[("tokenplan_worker_rejections_total", (("reason", "usage_too_late"),))] == 1
    assert samples[("tokenplan_worker_units_total", ())] == 1
    assert samples[("tokenplan_worker_unit_records_sum", ())] == 2
    assert samples[("tokenplan_worker_apply_seconds_count", ())] == 1
    assert samples[("tokenplan_worker_apply_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("tokenplan_worker_apply_seconds_bucket", (("le", "0.0025"),))] == 0


def test_redelivered_records_below_the_next_offset_count_nothing():
    metrics = _metrics()
    metrics.count_applied([_v2(4, USAGE, USAGE), _v2(5, PLANS)], 5, 1, [])
    metrics.count_applied([_v2(4, USAGE)], 5, 0, [])  # a redelivery alone: not a unit that applied events
    samples = _samples(metrics)
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "usage"),))] == 0
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "plans"),))] == 1
    assert samples[("tokenplan_worker_units_total", ())] == 1


def test_policy_records_count_under_the_policy_topic():
    metrics = _metrics()
    metrics.count_policy(None)
    metrics.count_policy("invalid_policy_event")
    samples = _samples(metrics)
    assert samples[("tokenplan_worker_events_applied_total", (("topic", "policy"),))] == 2
    assert samples[("tokenplan_worker_rejections_total", (("reason", "invalid_policy_event"),))] == 1


def test_scrape_time_gauges_show_the_state_and_each_partitions_lag():
    metrics = _metrics()
    metrics.register_scrape(lambda: "rebalancing", lambda: [("ledger-log", 0, 0), ("ledger-log", 3, 12)])
    samples = _samples(metrics)
    assert {state: samples[("tokenplan_worker_state", (("state", state),))] for state in STATES} == {
        "running": 0, "recovering": 0, "rebalancing": 1, "starting": 0}
    assert samples[("tokenplan_worker_consumer_lag", (("partition", "3"), ("topic", "ledger-log")))] == 12
    assert samples[("tokenplan_worker_consumer_lag", (("partition", "0"), ("topic", "ledger-log")))] == 0


class FakeConsumer:
    def __init__(self, assigned: set[TP], highwaters: dict[TP, int | None]) -> None:
        self.assigned, self.highwaters = assigned, highwaters

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.highwaters:
            raise AssertionError("Partition is not assigned")  # what aiokafka says
        return self.highwaters[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self._consumer = consumer


class FakeTable:
    def __init__(self, dbs: dict[int, dict[bytes, bytes]]) -> None:
        self.data = type("Store", (), {"_dbs": dbs})()


def test_ledger_lag_is_highwater_minus_the_partition_records_next_offset_for_owned_partitions():
    log = "glue.ledger-log"
    consumer = FakeConsumer({TP(log, 0), TP(log, 1), TP(log, 2), TP(log, 3), TP("glue.clock", 0),
                             TP("glue-accounts-changelog", 0)},
                            {TP(log, 0): 10, TP(log, 1): 5, TP(log, 2): None})  # 3: revoked meanwhile
    table = FakeTable({0: {partition_key(0): PartitionRecord(next_offset=7).to_bytes()}, 1: {}, 2: {}})
    assert ledger_lag(FakeApp(consumer), table, log) == [("ledger-log", 0, 3), ("ledger-log", 1, 5)]
    assert ledger_lag(FakeApp(None), table, log) == []


async def test_the_built_worker_serves_its_own_registry_at_metrics():
    worker = build(SETTINGS)
    other = build(SETTINGS)
    worker.metrics.count_policy(None)
    view = worker.wiring.app.web.views["/metrics"]
    response = await view(make_mocked_request("GET", "/metrics"))
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.body.decode())}
    assert {"tokenplan_worker_events_applied", "tokenplan_worker_rejections", "tokenplan_worker_apply_seconds",
            "tokenplan_worker_consumer_lag", "tokenplan_worker_state", "tokenplan_worker_units",
            "tokenplan_worker_unit_records"} <= set(families)
    state = {s.labels["state"]: s.value for s in families["tokenplan_worker_state"].samples}
    assert state["starting"] == 1  # not started: nothing recovered yet
    assert other.metrics.registry is not worker.metrics.registry
    assert _samples(other.metrics)[("tokenplan_worker_events_applied_total", (("topic", "policy"),))] == 0


def test_no_series_label_is_an_account_or_a_key():
    metrics = _metrics()
    metrics.count_applied([_v2(0, USAGE, PLANS)], -1, 2, [_dead("invalid_event")])
    for (name, labels), _value in _samples(metrics).items():
        assert all(value not in {"acct", "key-acct"} for _key, value in labels), (name, labels)


def test_a_ledger_log_records_delivery_is_timed_from_its_kafka_timestamp_and_never_negative():
    metrics = _metrics()
    metrics.record_arrived(1_000.0, 1_000.3)  # faust's timestamps are seconds
    metrics.record_arrived(1_000.0, 999.0)  # a clock behind the broker's: counted as 0
    samples = _samples(metrics)
    assert samples[("tokenplan_worker_ledger_log_delivery_seconds_count", ())] == 2
    assert samples[("tokenplan_worker_ledger_log_delivery_seconds_bucket", (("le", "0.25"),))] == 1
    assert samples[("tokenplan_worker_ledger_log_delivery_seconds_bucket", (("le", "0.5"),))] == 2
