"""The projector's settings, from the environment; every limit named with its default.

Projections never import `streams` (import contract), so the few variables shared with
the worker (bootstrap, app id, topic prefix, partitions) are read here again, with the
same names and defaults.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["ProjectorSettings", "DEFAULTS"]

#: variable -> default (the README's settings table is this).
DEFAULTS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "TOKENPLAN_APP_ID": "tokenplan",
    "TOKENPLAN_TOPIC_PREFIX": "tokenplan.",
    "TOKENPLAN_PARTITIONS": "8",
    "TOKENPLAN_REPLICATION": "1",
    "TOKENPLAN_PROJECTIONS_URL": "sqlite:///.data/projections.db",
    "TOKENPLAN_PROJECTOR_GROUP": "",  # empty: <app_id>-projector
    "TOKENPLAN_PROJECTOR_BATCH_MAX": "2000",
    "TOKENPLAN_PROJECTOR_POLL_MS": "500",
    "TOKENPLAN_PROJECTOR_PROGRESS_S": "10",
    "TOKENPLAN_PROJECTOR_METRICS_PORT": "6071",
    "TOKENPLAN_SESSION_TIMEOUT_MS": "10000",
    "TOKENPLAN_ALERT_THRESHOLDS": "80,90,100",
    "TOKENPLAN_WEBHOOK_URL": "",
    "TOKENPLAN_WEBHOOK_SECRET": "",
    "TOKENPLAN_WEBHOOK_ATTEMPTS_MAX": "10",
    "TOKENPLAN_WEBHOOK_BACKOFF_S": "1",
    "TOKENPLAN_WEBHOOK_BACKOFF_MAX_S": "300",
    "TOKENPLAN_WEBHOOK_TIMEOUT_S": "10",
    "TOKENPLAN_WEBHOOK_BATCH_MAX": "50",
}


def _env(environ: dict[str, str], name: str) -> str:
    return environ.get(name, DEFAULTS[name])


def parse_thresholds(text: str) -> tuple[int, ...]:
    """'80,90,100' -> (80, 90, 100); whole percents in 1..100, sorted, no duplicates."""
    values = sorted({int(part) for part in text.replace(" ", "").split(",") if part})
    if not values or values[0] < 1 or values[-1] > 100:
        raise ValueError(f"TOKENPLAN_ALERT_THRESHOLDS must be whole percents in 1..100, got {text!r}")
    return tuple(values)


@dataclass(frozen=True)
class ProjectorSettings:
    bootstrap: str = DEFAULTS["KAFKA_BOOTSTRAP_SERVERS"]
    app_id: str = DEFAULTS["TOKENPLAN_APP_ID"]
    topic_prefix: str = DEFAULTS["TOKENPLAN_TOPIC_PREFIX"]
    #: Partitions of the alerts topic when the projector creates it (the worker's count).
    partitions: int = 8
    replication: int = 1
    projections_url: str = DEFAULTS["TOKENPLAN_PROJECTIONS_URL"]
    group: str = ""
    #: Records folded in one transaction (one fetch): bigger is faster, smaller holds locks shorter.
    batch_max: int = 2000
    #: How long one fetch waits for records.
    poll_ms: int = 500
    #: Seconds between progress lines.
    progress_s: float = 10.0
    #: Port of GET /metrics (127.0.0.1); 0: no server. from_env's default is 6071; built
    #: directly (tests, the bench) a projector serves no metrics unless given a port.
    metrics_port: int = 0
    #: How soon the group notices a dead projector (the worker's variable and default).
    session_timeout_ms: int = 10000
    thresholds: tuple[int, ...] = (80, 90, 100)
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)
    #: POSTs per alert before its delivery is marked failed (given up).
    webhook_attempts_max: int = 10
    #: First retry delay; doubles per attempt up to webhook_backoff_max_s.
    webhook_backoff_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    #: One POST's timeout.
    webhook_timeout_s: float = 10.0
    #: Due deliveries tried per round.
    webhook_batch_max: int = 50

    @property
    def group_id(self) -> str:
        return self.group or f"{self.app_id}-projector"

    def topic(self, short_name: str) -> str:
        return f"{self.topic_prefix}{short_name}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ProjectorSettings":
        env = dict(os.environ if environ is None else environ)
        settings = cls(
            bootstrap=_env(env, "KAFKA_BOOTSTRAP_SERVERS"),
            app_id=_env(env, "TOKENPLAN_APP_ID"),
            topic_prefix=_env(env, "TOKENPLAN_TOPIC_PREFIX"),
            partitions=int(_env(env, "TOKENPLAN_PARTITIONS")),
            replication=int(_env(env, "TOKENPLAN_REPLICATION")),
            projections_url=_env(env, "TOKENPLAN_PROJECTIONS_URL"),
            group=_env(env, "TOKENPLAN_PROJECTOR_GROUP"),
            batch_max=int(_env(env, "TOKENPLAN_PROJECTOR_BATCH_MAX")),
            poll_ms=int(_env(env, "TOKENPLAN_PROJECTOR_POLL_MS")),
            progress_s=float(_env(env, "TOKENPLAN_PROJECTOR_PROGRESS_S")),
            metrics_port=int(_env(env, "TOKENPLAN_PROJECTOR_METRICS_PORT")),
            session_timeout_ms=int(_env(env, "TOKENPLAN_SESSION_TIMEOUT_MS")),
            thresholds=parse_thresholds(_env(env, "TOKENPLAN_ALERT_THRESHOLDS")),
            webhook_url=_env(env, "TOKENPLAN_WEBHOOK_URL"),
            webhook_secret=_env(env, "TOKENPLAN_WEBHOOK_SECRET"),
            webhook_attempts_max=int(_env(env, "TOKENPLAN_WEBHOOK_ATTEMPTS_MAX")),
            webhook_backoff_s=float(_env(env, "TOKENPLAN_WEBHOOK_BACKOFF_S")),
            webhook_backoff_max_s=float(_env(env, "TOKENPLAN_WEBHOOK_BACKOFF_MAX_S")),
            webhook_timeout_s=float(_env(env, "TOKENPLAN_WEBHOOK_TIMEOUT_S")),
            webhook_batch_max=int(_env(env, "TOKENPLAN_WEBHOOK_BATCH_MAX")),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that would fail later and less clearly."""
        if self.batch_max < 1:
            raise ValueError("TOKENPLAN_PROJECTOR_BATCH_MAX must be >= 1")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("TOKENPLAN_WEBHOOK_URL is set but TOKENPLAN_WEBHOOK_SECRET is not: bodies must be signed")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("TOKENPLAN_PROJECTOR_METRICS_PORT must be a port (0..65535; 0: no metrics server)")
        if self.webhook_attempts_max < 1:
            raise ValueError("TOKENPLAN_WEBHOOK_ATTEMPTS_MAX must be >= 1")
