"""Runtime settings of the worker, read once from the environment.

Every limit of the runtime lives here with its default, so an operator finds it by
name (the rulebook's own limits live in `streams.ledger.limits`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from streams.gc_policy import GEN0_THRESHOLD
from streams.ledger.limits import Limits
from streams.ledger.usage_policy import PolicyLimits


def _env_int(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise SystemExit(f"{name}={raw!r} is not an integer") from error


#: Environment variable -> Limits field. A worker and a replay of its log must agree.
LIMIT_VARIABLES: dict[str, str] = {
    "TOKENPLAN_TOKENS_PER_FIELD_MAX": "tokens_per_field_max",
    "TOKENPLAN_EVENT_BYTES_MAX": "event_bytes_max",
    "TOKENPLAN_PACKAGES_MAX": "packages_max",
    "TOKENPLAN_REFRESHES_MAX": "refreshes_max",
    "TOKENPLAN_GLOBAL_REFRESHES_MAX": "global_refreshes_max",
}


#: Environment variable (whole seconds) -> Limits field holding a duration.
DURATION_VARIABLES: dict[str, str] = {
    "TOKENPLAN_LATENESS_MAX_S": "lateness_max",
    "TOKENPLAN_DEDUPE_WINDOW_S": "dedupe_window",
}


def limits_from_env(environ: dict[str, str] | None = None) -> Limits:
    """The core's Limits: documented defaults, overridden by TOKENPLAN_*_MAX / *_S variables.

    TOKENPLAN_LATENESS_MAX_S alone also widens the dedupe window to match when the
    window would otherwise be shorter (the window may never be shorter than lateness).
    """
    env = dict(os.environ if environ is None else environ)
    overrides: dict = {attribute: _env_int(env, name, 0) for name, attribute in LIMIT_VARIABLES.items() if env.get(name)}
    for name, attribute in DURATION_VARIABLES.items():
        if env.get(name):
            overrides[attribute] = timedelta(seconds=_env_int(env, name, 0))
    if "lateness_max" in overrides and "dedupe_window" not in overrides:
        overrides["dedupe_window"] = max(overrides["lateness_max"], Limits().dedupe_window)
    try:
        return Limits(**overrides)
    except ValueError as error:
        raise SystemExit(f"invalid limit: {error}") from error


#: Environment variable -> PolicyLimits field (streams.ledger.usage_policy; defaults there).
POLICY_VARIABLES: dict[str, str] = {
    "TOKENPLAN_POLICY_WARN_AFTER": "warn_after",
    "TOKENPLAN_POLICY_SUSPEND_AFTER": "suspend_after",
    "TOKENPLAN_POLICY_WINDOW_S": "window_s",
    "TOKENPLAN_POLICY_GRACE_S": "grace_s",
}


def policy_limits_from_env(environ: dict[str, str] | None = None) -> PolicyLimits:
    """The usage policy's thresholds: documented defaults, overridden by TOKENPLAN_POLICY_*."""
    env = dict(os.environ if environ is None else environ)
    overrides = {field: _env_int(env, name, 0) for name, field in POLICY_VARIABLES.items() if env.get(name)}
    try:
        return PolicyLimits(**overrides)
    except ValueError as error:
        raise SystemExit(f"invalid policy limit: {error}") from error


def partitions_from_env(environ: dict[str, str] | None = None) -> int:
    """TOKENPLAN_PARTITIONS (default 8): replays group accounts by it as the worker does."""
    env = dict(os.environ if environ is None else environ)
    partitions = _env_int(env, "TOKENPLAN_PARTITIONS", 8)
    if partitions < 1:
        raise SystemExit(f"TOKENPLAN_PARTITIONS must be at least 1, got {partitions}")
    return partitions


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What a worker needs to know; `from_env` documents each variable."""

    #: KAFKA_BOOTSTRAP_SERVERS: comma-separated host:port list.
    bootstrap_servers: str = "127.0.0.1:9092"
    #: TOKENPLAN_APP_ID: faust app id = consumer group and changelog topic prefix.
    app_id: str = "tokenplan"
    #: TOKENPLAN_TOPIC_PREFIX: every topic name starts with it (tests use a fresh one).
    topic_prefix: str = "tokenplan."
    #: TOKENPLAN_PARTITIONS: partitions of every input, output and changelog topic.
    partitions: int = 8
    #: TOKENPLAN_REPLICATION: replication factor of the topics we create.
    replication: int = 1
    #: TOKENPLAN_WEB_HOST / TOKENPLAN_WEB_PORT: the HTTP endpoint (health, lookups).
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: TOKENPLAN_DATA_DIR: RocksDB table state and faust's local data.
    data_dir: Path = Path(".data")
    #: TOKENPLAN_CANONICAL_URL: how other workers reach this one (lookup routing).
    canonical_url: str = ""
    #: TOKENPLAN_PRODUCER_LINGER_MS: producer batching delay; small, gateways wait on status.
    producer_linger_ms: int = 1
    #: TOKENPLAN_COMMIT_INTERVAL_MS: how often consumed offsets are committed.
    commit_interval_ms: int = 1000
    #: TOKENPLAN_SESSION_TIMEOUT_MS: how soon the group notices a dead worker (kill -9,
    #: crash) and gives its partitions to another; faust's default is 60 s.
    session_timeout_ms: int = 10000
    #: TOKENPLAN_ADMIN_TOKEN: bearer token for operations outside the event flow
    #: (POST /admin/refresh). Unset: those operations are disabled. Never logged.
    admin_token: str = field(default="", repr=False)
    #: TOKENPLAN_STATUS_SCAN_INTERVAL_MS: how often expiry is checked (time passing, no event).
    status_scan_interval_ms: int = 1000
    #: TOKENPLAN_SEQUENCER_BATCH_MAX: input records the sequencer forwards per batch (one commit each).
    sequencer_batch_max: int = 500
    #: TOKENPLAN_BATCH_WAIT_MS: the sequencer's batching window: from the first input record
    #: of a batch, how long it keeps collecting before it forwards (a lone event waits at
    #: most this; under load each ledger-log record then carries many events).
    batch_wait_ms: int = 20
    #: TOKENPLAN_CONSUMER_FETCH_WAIT_MS: how long the broker may hold the worker's consumer's
    #: fetch for data (faust hard-codes 1500 ms, which stalls ledger-log behind idle
    #: partitions: streams.worker.faust_fixes).
    consumer_fetch_wait_ms: int = 20

    #: TOKENPLAN_LEDGER_RECORD_EVENTS_MAX: input events the sequencer packs into one
    #: ledger-log record (the ledger's unit of work; one record per partition per batch).
    ledger_record_events_max: int = 500
    #: TOKENPLAN_LEDGER_RECORD_BYTES_MAX: bytes of input events in one ledger-log record
    #: (below the broker's 1 MiB message limit, with room for the frame).
    ledger_record_bytes_max: int = 512 * 1024
    #: TOKENPLAN_STREAM_BUFFER_MAX: ledger-log records (and clock ticks) faust may hold for
    #: the applier beyond the ones it is applying (faust's stream_buffer_maxsize, 4096 by
    #: default: up to 2 GB of 512 KiB batch records read ahead; under a 600k-event backlog
    #: 256 measured 634 MB of RSS against 695 MB, at the same rate). Fetching pauses when full.
    stream_buffer_max: int = 256
    #: TOKENPLAN_UNIT_RECORDS_MAX: ledger-log records of one partition the applier takes as
    #: one unit of work when they arrived while its previous unit was being made durable.
    #: A unit keeps its facts and writes in memory until it is durable: under a backlog of
    #: 600k events, 64 gave the worker 624 MB of RSS, 16 gave 312 MB, 8 gave 266 MB, at the
    #: same rate (17-18k events/s).
    unit_records_max: int = 16
    #: TOKENPLAN_ROCKSDB_WRITE_BUFFER_BYTES: the memtables of all the worker's RocksDB
    #: databases together (one write-buffer manager; the largest is flushed near the cap).
    rocksdb_write_buffer_bytes: int = 64 * 1024 * 1024
    #: TOKENPLAN_ROCKSDB_BLOCK_CACHE_BYTES: one block cache shared by all of them.
    rocksdb_block_cache_bytes: int = 32 * 1024 * 1024
    #: TOKENPLAN_RECORD_CACHE_MAX: decoded account records kept in memory (LRU).
    record_cache_max: int = 100_000

    #: TOKENPLAN_SEQUENCER: `process` (its own process, started by `tokenplan worker`) or
    #: `inline` (a service inside the faust worker process).
    sequencer: str = "process"

    #: TOKENPLAN_EVENT_LOOP: `uvloop` (libuv; less CPU per callback) or `asyncio`.
    event_loop: str = "asyncio"
    #: TOKENPLAN_GC_GEN0_THRESHOLD: container allocations between the garbage collector's
    #: young collections in the worker (CPython's default: 700; 0 keeps CPython's
    #: thresholds): see streams/gc_policy.py.
    gc_gen0_threshold: int = GEN0_THRESHOLD

    #: The core's limits (streams.ledger.limits), with overrides from the environment.
    limits: Limits = field(default_factory=Limits)
    #: The usage policy's thresholds (TOKENPLAN_POLICY_*).
    policy: PolicyLimits = field(default_factory=PolicyLimits)

    def __post_init__(self) -> None:
        for name in ("partitions", "replication", "sequencer_batch_max", "ledger_record_events_max",
                     "record_cache_max", "unit_records_max", "stream_buffer_max", "rocksdb_write_buffer_bytes",
                     "rocksdb_block_cache_bytes",
                     "commit_interval_ms", "session_timeout_ms", "status_scan_interval_ms", "consumer_fetch_wait_ms"):
            if getattr(self, name) < 1:
                raise SystemExit(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.sequencer not in ("process", "inline"):
            raise SystemExit(f"sequencer must be process or inline, got {self.sequencer!r}")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SystemExit(f"event_loop must be uvloop or asyncio, got {self.event_loop!r}")
        if not 4096 <= self.ledger_record_bytes_max <= 900 * 1024:
            raise SystemExit("ledger_record_bytes_max must be in 4096..921600 (the broker takes 1 MiB)")
        if self.batch_wait_ms < 0 or self.producer_linger_ms < 0 or self.gc_gen0_threshold < 0:
            raise SystemExit("batch_wait_ms, producer_linger_ms and gc_gen0_threshold must not be negative")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if environ is None else environ)
        defaults = cls()
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or defaults.bootstrap_servers,
            app_id=env.get("TOKENPLAN_APP_ID") or defaults.app_id,
            topic_prefix=env.get("TOKENPLAN_TOPIC_PREFIX") or defaults.topic_prefix,
            partitions=_env_int(env, "TOKENPLAN_PARTITIONS", defaults.partitions),
            replication=_env_int(env, "TOKENPLAN_REPLICATION", defaults.replication),
            web_host=env.get("TOKENPLAN_WEB_HOST") or defaults.web_host,
            web_port=_env_int(env, "TOKENPLAN_WEB_PORT", defaults.web_port),
            data_dir=Path(env.get("TOKENPLAN_DATA_DIR") or defaults.data_dir),
            canonical_url=env.get("TOKENPLAN_CANONICAL_URL") or "",
            producer_linger_ms=_env_int(env, "TOKENPLAN_PRODUCER_LINGER_MS", defaults.producer_linger_ms),
            commit_interval_ms=_env_int(env, "TOKENPLAN_COMMIT_INTERVAL_MS", defaults.commit_interval_ms),
            session_timeout_ms=_env_int(env, "TOKENPLAN_SESSION_TIMEOUT_MS", defaults.session_timeout_ms),
            admin_token=env.get("TOKENPLAN_ADMIN_TOKEN") or "",
            status_scan_interval_ms=_env_int(env, "TOKENPLAN_STATUS_SCAN_INTERVAL_MS", defaults.status_scan_interval_ms),
            sequencer_batch_max=_env_int(env, "TOKENPLAN_SEQUENCER_BATCH_MAX", defaults.sequencer_batch_max),
            batch_wait_ms=_env_int(env, "TOKENPLAN_BATCH_WAIT_MS", defaults.batch_wait_ms),
            consumer_fetch_wait_ms=_env_int(env, "TOKENPLAN_CONSUMER_FETCH_WAIT_MS", defaults.consumer_fetch_wait_ms),
            ledger_record_events_max=_env_int(env, "TOKENPLAN_LEDGER_RECORD_EVENTS_MAX",
                                              defaults.ledger_record_events_max),
            ledger_record_bytes_max=_env_int(env, "TOKENPLAN_LEDGER_RECORD_BYTES_MAX",
                                             defaults.ledger_record_bytes_max),
            record_cache_max=_env_int(env, "TOKENPLAN_RECORD_CACHE_MAX", defaults.record_cache_max),
            unit_records_max=_env_int(env, "TOKENPLAN_UNIT_RECORDS_MAX", defaults.unit_records_max),
            stream_buffer_max=_env_int(env, "TOKENPLAN_STREAM_BUFFER_MAX", defaults.stream_buffer_max),
            rocksdb_write_buffer_bytes=_env_int(env, "TOKENPLAN_ROCKSDB_WRITE_BUFFER_BYTES",
                                                defaults.rocksdb_write_buffer_bytes),
            rocksdb_block_cache_bytes=_env_int(env, "TOKENPLAN_ROCKSDB_BLOCK_CACHE_BYTES",
                                               defaults.rocksdb_block_cache_bytes),
            sequencer=env.get("TOKENPLAN_SEQUENCER") or defaults.sequencer,
            event_loop=env.get("TOKENPLAN_EVENT_LOOP") or defaults.event_loop,
            gc_gen0_threshold=_env_int(env, "TOKENPLAN_GC_GEN0_THRESHOLD", defaults.gc_gen0_threshold),
            limits=limits_from_env(env),
            policy=policy_limits_from_env(env),
        )

    @property
    def broker_urls(self) -> list[str]:
        """faust wants one kafka:// URL per bootstrap server."""
        return [f"kafka://{host.strip()}" for host in self.bootstrap_servers.split(",") if host.strip()]

    @property
    def advertised_url(self) -> str:
        """The canonical URL, defaulting to the web host and port."""
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def producer_linger_s(self) -> float:
        return self.producer_linger_ms / 1000

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as `usage`."""
        return f"{self.topic_prefix}{name}"
