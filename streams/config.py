"""Runtime settings of the worker, read once from the environment.

Every limit of the runtime lives here with its default, so an operator finds it by
name (the rulebook's own limits live in `streams.ledger.limits`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_int(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise SystemExit(f"{name}={raw!r} is not an integer") from error


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
        )

    @property
    def broker_urls(self) -> list[str]:
        """faust wants one kafka:// URL per bootstrap server."""
        return [f"kafka://{host.strip()}" for host in self.bootstrap_servers.split(",") if host.strip()]

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as `usage`."""
        return f"{self.topic_prefix}{name}"
