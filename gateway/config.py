"""The gateway's settings: every limit named, with its environment variable and default.

Table-driven: `VARIABLES` maps each field to its variable, so `from_env`, the
README table and `tokenplan gateway --help` read one list.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

__all__ = ["GatewaySettings", "VARIABLES", "StalePolicy"]

StalePolicy = Literal["fail-closed", "fail-open"]


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """What a gateway process needs; `VARIABLES` names the environment variable of each."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "tokenplan."
    partitions: int = 8
    replication: int = 1
    #: The HMAC secret keys are hashed under. Unset: read (or first created) at `key_secret_file`.
    key_secret: str = field(default="", repr=False)
    key_secret_file: Path = Path(".data/key-secret")
    cluster: Literal["cn", "sgp", "ams"] = "sgp"
    upstream_url: str = "http://127.0.0.1:9000"
    #: The credential the gateway sends upstream (its own, never the client's tp- key).
    upstream_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    #: The worker's lookup, asked when the cache has no status for an account.
    worker_url: str = "http://127.0.0.1:6066"
    lookup_attempts: int = 3
    lookup_backoff_ms: int = 50
    lookup_timeout_ms: int = 1000
    #: The cache is stale when it has not reached the end of its topics for this long.
    stale_after_ms: int = 3000
    stale_policy: StalePolicy = "fail-closed"
    #: Output tokens assumed for a request without max_tokens (the in-flight estimate).
    default_max_tokens: int = 4096
    #: How long the gateway counts a finished request's credits against the cached
    #: remaining credits when no status record shows them yet.
    unconfirmed_ttl_ms: int = 30000
    #: Usage events waiting for Kafka on local disk, and the bound of that spool.
    spool_dir: Path = Path(".data/gateway-spool")
    spool_bytes_max: int = 256 * 1024 * 1024
    #: How long a usage send may wait for the broker before the event goes to the spool.
    send_timeout_ms: int = 5000
    spool_retry_ms: int = 1000
    upstream_timeout_s: int = 600
    #: uvloop (libuv: about a third less CPU per proxied request) or asyncio.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    def __post_init__(self) -> None:
        for name in ("partitions", "replication", "port", "lookup_attempts", "lookup_timeout_ms",
                     "stale_after_ms", "default_max_tokens", "spool_bytes_max", "send_timeout_ms",
                     "spool_retry_ms", "upstream_timeout_s"):
            if getattr(self, name) < 1 and not (name == "port" and self.port == 0):
                raise SystemExit(f"{VARIABLES[name][0]} must be at least 1, got {getattr(self, name)}")
        if self.stale_policy not in ("fail-closed", "fail-open"):
            raise SystemExit(f"TOKENPLAN_GATEWAY_STALE_POLICY must be fail-closed or fail-open, got {self.stale_policy!r}")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SystemExit(f"TOKENPLAN_GATEWAY_EVENT_LOOP must be uvloop or asyncio, got {self.event_loop!r}")
        if self.cluster not in ("cn", "sgp", "ams"):
            raise SystemExit(f"TOKENPLAN_GATEWAY_CLUSTER must be cn, sgp or ams, got {self.cluster!r}")

    def topic(self, name: str) -> str:
        """The full topic name of a short name from `schemas.topics`."""
        return f"{self.topic_prefix}{name}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "GatewaySettings":
        """Defaults, then the environment, then explicit overrides (command-line options)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {item.name: item.type for item in fields(cls)}
        for name, (variable, _help) in VARIABLES.items():
            text = env.get(variable)
            if text:
                values[name] = _parse(types[name], text, variable)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _parse(kind: Any, text: str, variable: str) -> Any:
    if kind in ("int", int):
        try:
            return int(text)
        except ValueError:
            raise SystemExit(f"{variable} must be an integer, got {text!r}") from None
    if kind in ("Path", Path):
        return Path(text)
    return text


#: field -> (environment variable, what it means). Defaults are the dataclass's.
VARIABLES: dict[str, tuple[str, str]] = {
    "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "Kafka brokers, host:port,..."),
    "topic_prefix": ("TOKENPLAN_TOPIC_PREFIX", "prefix of every topic name"),
    "partitions": ("TOKENPLAN_PARTITIONS", "partitions of the topics the gateway creates (keys)"),
    "replication": ("TOKENPLAN_REPLICATION", "replication factor of the topics it creates"),
    "key_secret": ("TOKENPLAN_KEY_SECRET", "HMAC secret of key hashes (never logged)"),
    "key_secret_file": ("TOKENPLAN_KEY_SECRET_FILE", "where the secret is kept when the variable is unset"),
    "cluster": ("TOKENPLAN_GATEWAY_CLUSTER", "cn, sgp or ams: written on every usage event"),
    "upstream_url": ("TOKENPLAN_GATEWAY_UPSTREAM", "the model server requests are forwarded to"),
    "upstream_key": ("TOKENPLAN_GATEWAY_UPSTREAM_KEY", "the gateway's own upstream credential (never logged)"),
    "host": ("TOKENPLAN_GATEWAY_HOST", "listen address"),
    "port": ("TOKENPLAN_GATEWAY_PORT", "listen port"),
    "worker_url": ("TOKENPLAN_WORKER_URL", "the worker's lookup, for accounts the cache has not seen"),
    "lookup_attempts": ("TOKENPLAN_GATEWAY_LOOKUP_ATTEMPTS", "tries of the lookup on 503 or no answer"),
    "lookup_backoff_ms": ("TOKENPLAN_GATEWAY_LOOKUP_BACKOFF_MS", "first wait between tries, doubled each time"),
    "lookup_timeout_ms": ("TOKENPLAN_GATEWAY_LOOKUP_TIMEOUT_MS", "time limit of one lookup try"),
    "stale_after_ms": ("TOKENPLAN_GATEWAY_STALE_AFTER_MS", "cache age after which the stale policy applies"),
    "stale_policy": ("TOKENPLAN_GATEWAY_STALE_POLICY", "fail-closed (refuse) or fail-open (allow accounts last seen active)"),
    "default_max_tokens": ("TOKENPLAN_GATEWAY_DEFAULT_MAX_TOKENS", "output tokens assumed when a request sets no max_tokens"),
    "unconfirmed_ttl_ms": ("TOKENPLAN_GATEWAY_UNCONFIRMED_TTL_MS", "how long spent credits count before the status shows them"),
    "spool_dir": ("TOKENPLAN_GATEWAY_SPOOL_DIR", "usage events waiting for Kafka"),
    "spool_bytes_max": ("TOKENPLAN_GATEWAY_SPOOL_BYTES_MAX", "bound of the spool; full: new requests are refused (503)"),
    "send_timeout_ms": ("TOKENPLAN_GATEWAY_SEND_TIMEOUT_MS", "wait for the broker's ack before spooling"),
    "spool_retry_ms": ("TOKENPLAN_GATEWAY_SPOOL_RETRY_MS", "how often the spool is retried"),
    "upstream_timeout_s": ("TOKENPLAN_GATEWAY_UPSTREAM_TIMEOUT_S", "time limit of one upstream request"),
    "event_loop": ("TOKENPLAN_GATEWAY_EVENT_LOOP", "uvloop or asyncio"),
}


def defaults_text() -> str:
    """`VARIABLE (default) meaning` lines for --help (secrets shown as unset)."""
    defaults = GatewaySettings()
    lines = []
    for name, (variable, meaning) in VARIABLES.items():
        value = "" if name in ("key_secret", "upstream_key") else getattr(defaults, name)
        lines.append(f"  {variable} ({value}): {meaning}")
    return "\n".join(lines)
