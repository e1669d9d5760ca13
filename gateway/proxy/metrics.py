"""The gateway's Prometheus metrics (prometheus_client), one registry per gateway app."""
from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]

#: Buckets of the cache decision: it is a few dict lookups, microseconds.
DECISION_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2)


@dataclass
class GatewayMetrics:
    """Counters by outcome and reason; key ids never appear in labels (bounded cardinality)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("tokenplan_gateway_requests", "Requests by route and outcome",
                                ["route", "outcome"], registry=r)
        self.refusals = Counter("tokenplan_gateway_refusals", "Refused requests by reason", ["reason"], registry=r)
        self.usage_errors = Counter("tokenplan_gateway_usage_errors",
                                    "Served requests whose usage could not be metered, by reason",
                                    ["reason"], registry=r)
        self.usage_events = Counter("tokenplan_gateway_usage_events", "Usage events by outcome (sent, spooled)",
                                    ["outcome"], registry=r)
        self.decision_seconds = Histogram("tokenplan_gateway_decision_seconds", "Quota cache decision time",
                                          buckets=DECISION_BUCKETS, registry=r)
        self.upstream_seconds = Histogram("tokenplan_gateway_upstream_seconds", "Upstream request time", registry=r)
        self.spool_bytes = Gauge("tokenplan_gateway_spool_bytes", "Bytes of records waiting for Kafka", registry=r)
        self.cache_age_seconds = Gauge("tokenplan_gateway_cache_age_seconds",
                                       "Since the cache last reached the end of its topics", registry=r)
        self.classifications = Counter("tokenplan_gateway_classifications",
                                       "Admitted requests by usage-policy class", ["kind"], registry=r)
        self.lookups = Counter("tokenplan_gateway_lookups", "Worker lookups on a cache miss, by outcome",
                               ["outcome"], registry=r)
