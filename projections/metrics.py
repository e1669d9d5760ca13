"""The projector's Prometheus metrics (prometheus_client), one registry per projector.

`Projector` makes one `ProjectorMetrics` and counts once per fetched batch, after its
transaction committed (`batch_committed`): a few `inc(n)` / `observe` calls per batch,
never one per fact. Read at scrape time (`ScrapeCollector`): the lag per source
partition (the consumer's high-water offset minus the next offset stored with the rows)
and the webhook sender's failed POSTs, so nothing runs between scrapes.

Labels are topic short names, partitions, alert kinds and thresholds: bounded sets, never an
account, a key id or an event id. `serve` runs the small aiohttp server that answers
`GET /metrics` on TOKENPLAN_PROJECTOR_METRICS_PORT.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from projections.alerts import POLICY_ALERT_KINDS, QUOTA_KIND

__all__ = ["BATCH_BUCKETS", "ProjectorMetrics", "ScrapeCollector", "serve"]

#: One batch, fetched to committed: a few ms for a handful of records, ~0.5 s for 2,000.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ProjectorMetrics:
    """The projector's registry and counters; `register_scrape` adds the scrape-time figures."""

    def __init__(self, topics: Sequence[str], thresholds: Iterable[int] = (),
                 registry: CollectorRegistry | None = None) -> None:
        """`topics`: the source topics' short names (labels); `thresholds`: the alert percents."""
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.facts_applied = Counter("tokenplan_projector_facts_applied",
                                     "Records folded into the tables, by source topic (duplicates and stale "
                                     "records not counted)", ["topic"], registry=r)
        self.duplicates = Counter("tokenplan_projector_duplicates",
                                  "Facts skipped because their id was already applied", registry=r)
        self.batches = Counter("tokenplan_projector_batches", "Fetched batches folded (one transaction each)",
                               registry=r)
        self.batch_seconds = Histogram("tokenplan_projector_batch_seconds",
                                       "One batch, from its fetch returning to its transaction committed",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.alerts = Counter("tokenplan_projector_alerts",
                              "Alerts decided, by kind and threshold percent (empty for a policy alert)",
                              ["kind", "threshold"], registry=r)
        # Children looked up once; zero series visible from the start.
        self._applied = {topic: self.facts_applied.labels(topic=topic) for topic in topics}
        self._alerts = {(kind, label): self.alerts.labels(kind=kind, threshold=label) for kind, label in
                        [(QUOTA_KIND, str(t)) for t in thresholds] + [(k, "") for k in POLICY_ALERT_KINDS]}

    def batch_committed(self, folded: Mapping[str, int], duplicates: int, alerts: Iterable[tuple[str, int | None]],
                        seconds: float) -> None:
        """One committed batch: facts folded per topic, duplicates, (kind, threshold) of each alert it decided."""
        for topic, count in folded.items():
            if count:
                child = self._applied.get(topic)
                if child is None:
                    child = self._applied[topic] = self.facts_applied.labels(topic=topic)
                child.inc(count)
        if duplicates:
            self.duplicates.inc(duplicates)
        for kind, threshold in alerts:
            label = "" if threshold is None else str(threshold)
            child = self._alerts.get((kind, label))
            if child is None:
                child = self._alerts[(kind, label)] = self.alerts.labels(kind=kind, threshold=label)
            child.inc()
        self.batches.inc()
        self.batch_seconds.observe(seconds)

    def register_scrape(self, lag: Callable[[], Iterable[tuple[str, int, int]]],
                        webhook_failures: Callable[[], int]) -> None:
        """Add the figures computed when /metrics is read (lag, webhook failures)."""
        self.registry.register(ScrapeCollector(lag, webhook_failures))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what GET /metrics answers)."""
        return generate_latest(self.registry)


class ScrapeCollector(Collector):
    """`tokenplan_projector_lag{topic,partition}` and `tokenplan_projector_webhook_failures_total`, at scrape time.

    Why at scrape time: the lag changes without a batch (the worker publishes, the fetch
    learns the high-water mark), and the failures are counted by the webhook sender itself.
    """

    def __init__(self, lag: Callable[[], Iterable[tuple[str, int, int]]], webhook_failures: Callable[[], int]) -> None:
        self._lag, self._failures = lag, webhook_failures

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        lag = GaugeMetricFamily("tokenplan_projector_lag",
                                "High-water offset minus the next offset stored with the rows, per assigned "
                                "source partition", labels=["topic", "partition"])
        for topic, partition, behind in self._lag():
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag
        yield CounterMetricFamily("tokenplan_projector_webhook_failures",
                                  "Webhook POSTs that failed (non-2xx or no answer); each is retried until the "
                                  "attempts limit", value=float(self._failures()))


async def serve(metrics: ProjectorMetrics, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    """Start `GET /metrics` on host:port; the caller cleans the runner up. Raises OSError when the port is taken."""
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
