"""The worker's Prometheus metrics (prometheus_client), one registry per worker.

`streams.worker.main.build` makes one `WorkerMetrics` and hands it to the applier, the
usage-policy agent and the web views; nothing here is module state. Two kinds:

- counted on the hot path, once per unit of work (`count_applied`, `unit_durable`): a
  few `inc(n)` / `observe` calls per unit, never a call per event. The events of a unit
  are split by input topic with `bytes.count` over the v2 frames (C speed), checked
  against the processor's own event count, and walked exactly only when they disagree;
- read at scrape time (`ScrapeCollector`): the consumer lag of the ledger-log partitions
  this worker owns and the worker's state, so nothing runs between scrapes.

Labels are topic short names, partitions, rejection reasons and states: bounded sets,
never an account, a key id or an event id.
"""
from __future__ import annotations

import struct
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas import topics
from streams.config import Settings
from streams.processing.batch_record import BatchFormatError, decode_record, record_format
from streams.processing.processor import Emit
from streams.processing.records import PartitionRecord
from streams.processing.state_store import partition_key
from streams.worker.app import Wiring
from streams.worker.web import worker_status

__all__ = ["STATES", "ScrapeCollector", "TopicCounter", "WorkerMetrics", "for_worker", "ledger_lag", "rejection_reason"]

#: One unit of work, arrival to durable: a few ms idle, up to seconds behind a backlog.
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Ledger-log records per unit: 1 with no backlog, up to TOKENPLAN_UNIT_RECORDS_MAX (16).
RECORD_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
#: What `streams.worker.web.worker_status` answers (the state gauge has one series each).
STATES = ("running", "recovering", "rebalancing", "starting")
#: The label of an input topic the worker does not know (a foreign writer): bounded.
OTHER = "other"
#: How every dead letter value starts (`streams.processing.records.dead_letter`, orjson keeps key order).
_REJECTED_PREFIX = b'{"type":"event.rejected","reason":"'

#: (value, key, headers, offset): a ledger-log record as the applier hands it to the processor.
LogRecord = tuple[bytes | None, bytes | None, object, int]


def frame_prefix(topic: str) -> bytes:
    """The bytes a v2 entry from `topic` starts with (streams.processing.batch_record: u16 length, topic)."""
    encoded = topic.encode("utf-8")
    return struct.pack(">H", len(encoded)) + encoded


def rejection_reason(value: bytes) -> str:
    """The `reason` of a dead letter, read from its first bytes (no JSON parse of the payload it quotes)."""
    if value.startswith(_REJECTED_PREFIX):
        end = value.find(b'"', len(_REJECTED_PREFIX))
        if end > 0:
            return value[len(_REJECTED_PREFIX):end].decode("utf-8", "replace")
    try:
        return str(orjson.loads(value).get("reason") or "unknown")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"


class TopicCounter:
    """Events of ledger-log records per input topic label, cheaply.

    Why not decode: the processor decodes every record already, and a second walk of the
    frames would cost ~1 us per event (~2% of the ~40 us it takes to apply one). Counting
    each known topic's frame prefix with `bytes.count` costs nothing per event; a payload
    that happens to hold such a prefix makes the sum exceed the processor's event count,
    and then the records are walked exactly.
    """

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(labels)
        self._prefixes = [(frame_prefix(topic), label) for topic, label in labels.items()]

    def count(self, records: Sequence[LogRecord], events: int) -> Tally[str]:
        """Events per label in `records`, which the processor counted as `events` in all."""
        counts: Tally[str] = Tally()
        for value, key, headers, _offset in records:
            if record_format(headers) == 2:
                for prefix, label in self._prefixes:
                    if found := (value or b"").count(prefix):
                        counts[label] += found
            else:
                self._exact(value, key, headers, counts)
        if counts.total() != events:
            counts = Tally()
            for value, key, headers, _offset in records:
                self._exact(value, key, headers, counts)
        return counts

    def _exact(self, value: bytes | None, key: bytes | None, headers, counts: Tally[str]) -> None:
        try:
            for event in decode_record(value, key, headers):
                counts[self._labels.get(event.topic, OTHER)] += 1
        except BatchFormatError:
            return  # dead-lettered whole: the processor counts no event for it


class WorkerMetrics:
    """The worker's registry and its counters; `register_scrape` adds the scrape-time gauges."""

    def __init__(self, input_topics: Mapping[str, str], registry: CollectorRegistry | None = None) -> None:
        """`input_topics`: full topic name -> label (usage, plans)."""
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.topics = TopicCounter(input_topics)
        self.events_applied = Counter("tokenplan_worker_events_applied", "Input events applied, by input topic",
                                      ["topic"], registry=r)
        self.rejections = Counter("tokenplan_worker_rejections", "Dead letters, by reason", ["reason"], registry=r)
        self.units = Counter("tokenplan_worker_units", "Ledger-log units of work that applied events", registry=r)
        self.unit_records = Histogram("tokenplan_worker_unit_records", "Ledger-log records per unit of work",
                                      buckets=RECORD_BUCKETS, registry=r)
        self.apply_seconds = Histogram("tokenplan_worker_apply_seconds",
                                       "One unit of work, from its first record's arrival at the applier to durable",
                                       buckets=APPLY_BUCKETS, registry=r)
        self.delivery_seconds = Histogram("tokenplan_worker_ledger_log_delivery_seconds",
                                          "A ledger-log record, from its Kafka timestamp (the sequencer's send) to "
                                          "its arrival at the applier", buckets=APPLY_BUCKETS, registry=r)
        # Children looked up once (labels() takes a lock and hashes per call); zero series visible from the start.
        self._applied = {label: self.events_applied.labels(topic=label)
                         for label in (*input_topics.values(), topics.POLICY)}
        self._rejected: dict[str, Counter] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> "WorkerMetrics":
        """Metrics whose topic labels are the short names of `settings`' input topics."""
        return cls({settings.topic(name): name for name in topics.ALL_INPUTS})

    def _applied_child(self, label: str) -> Counter:
        child = self._applied.get(label)
        if child is None:
            child = self._applied[label] = self.events_applied.labels(topic=label)
        return child

    def reject(self, reason: str, count: int = 1) -> None:
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self.rejections.labels(reason=reason)
        child.inc(count)

    def count_applied(self, records: Sequence[LogRecord], next_offset: int, events: int,
                      emitted: Iterable[Emit]) -> None:
        """One unit's events by input topic and its dead letters by reason.

        `next_offset` is the partition's next offset before the unit (-1: none yet):
        records below it are redeliveries the processor skipped, so they count nothing.
        """
        if next_offset >= 0:
            records = [record for record in records if record[3] >= next_offset]
        if events:
            for label, count in self.topics.count(records, events).items():
                self._applied_child(label).inc(count)
            self.units.inc()
            self.unit_records.observe(len(records))
        reasons = Tally(rejection_reason(emit.value) for emit in emitted if emit.topic == topics.REJECTED)
        for reason, count in reasons.items():
            self.reject(reason, count)

    def record_arrived(self, timestamp_s: float, now_s: float) -> None:
        """A ledger-log record reached the applier: faust's message timestamp and the wall clock, in seconds."""
        self.delivery_seconds.observe(max(0.0, now_s - timestamp_s))

    def unit_durable(self, seconds: float) -> None:
        """A unit that applied events is durable `seconds` after its first record arrived."""
        self.apply_seconds.observe(seconds)

    def count_policy(self, rejected: str | None) -> None:
        """One policy record applied (and dead-lettered when `rejected` names why)."""
        self._applied[topics.POLICY].inc()
        if rejected is not None:
            self.reject(rejected)

    def register_scrape(self, state: Callable[[], str], lag: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        """Add the gauges computed when /metrics is read (state and consumer lag)."""
        self.registry.register(ScrapeCollector(state, lag))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what GET /metrics answers)."""
        return generate_latest(self.registry)


class ScrapeCollector(Collector):
    """`tokenplan_worker_state{state}` and `tokenplan_worker_consumer_lag{topic,partition}`, at scrape time.

    Why not gauges set by the worker: both change without an event (a rebalance, a fetch),
    and computing them only when scraped costs nothing between scrapes.
    """

    def __init__(self, state: Callable[[], str], lag: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self._state, self._lag = state, lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        current = self._state()
        states = GaugeMetricFamily("tokenplan_worker_state", "1 for the worker's current state (as /health says)",
                                   labels=["state"])
        for name in dict.fromkeys((*STATES, current)):
            states.add_metric([name], 1.0 if name == current else 0.0)
        yield states
        lag = GaugeMetricFamily("tokenplan_worker_consumer_lag",
                                "High-water offset minus the next offset to apply, per owned ledger-log partition",
                                labels=["topic", "partition"])
        for topic, partition, behind in self._lag():
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag


def ledger_lag(app, table, ledger_topic: str, label: str = topics.LEDGER_LOG) -> list[tuple[str, int, int]]:
    """(label, partition, lag) for each ledger-log partition assigned to this worker.

    The next offset to apply is the partition record the applier writes with every unit
    (`p:<partition>` in the accounts table's RocksDB): durable, so a unit in flight is
    still lag. Defensive by design: before the consumer exists, mid-rebalance (a
    partition not assigned any more, its store closed) or before the first fetch (no
    high-water yet), a partition is left out rather than failing the scrape.
    """
    consumer = getattr(app, "_consumer", None)  # `app.consumer` would create one
    if consumer is None:
        return []
    try:
        assigned = sorted(tp.partition for tp in consumer.assignment() if tp.topic == ledger_topic)
    except Exception:
        return []
    lags = []
    for partition in assigned:
        try:
            highwater = consumer.highwater(TP(ledger_topic, partition))
            db = table.data._dbs.get(partition)
            if highwater is None or db is None:
                continue
            raw = db.get(partition_key(partition))
            next_offset = PartitionRecord.from_bytes(raw).next_offset if raw is not None else -1
        except Exception:
            continue
        # -1: nothing applied yet; ledger-log is kept forever, so everything from offset 0 is behind.
        lags.append((label, partition, max(0, highwater - max(next_offset, 0))))
    return lags


def for_worker(wiring: Wiring) -> WorkerMetrics:
    """The worker's metrics, with the scrape-time gauges reading its app and accounts table."""
    settings, app, table = wiring.settings, wiring.app, wiring.accounts_table
    metrics = WorkerMetrics.for_settings(settings)
    ledger_topic = settings.topic(topics.LEDGER_LOG)
    metrics.register_scrape(lambda: worker_status(app), lambda: ledger_lag(app, table, ledger_topic))
    return metrics
