"""Run real workers as subprocesses, each in its own topic namespace: tests and benchmarks.

No mocked Kafka anywhere: the broker is deploy/local-kafka's (or whatever
KAFKA_BOOTSTRAP_SERVERS names), and each worker is a real `tokenplan worker` process.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

#: This folder: the broker scripts sit beside this module.
DEPLOY = Path(__file__).resolve().parent
#: The checkout (worker subprocesses run there).
REPO = DEPLOY.parent
LOCAL_KAFKA = DEPLOY / "local-kafka"
KAFKA_READY = DEPLOY / "kafka_ready.py"
#: How long a worker may take to answer /health with 200 (first start compiles little).
WORKER_READY_TIMEOUT_S = 90.0


def broker_reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    result = subprocess.run([sys.executable, str(KAFKA_READY), host, port, "0"], check=False)
    return result.returncode == 0


@contextlib.contextmanager
def local_broker(bootstrap: str) -> Iterator[bool]:
    """Use the broker at `bootstrap`; start deploy/local-kafka on its port when none answers.

    Yields whether it started one; a broker it started is stopped (data removed) on exit,
    one that was already running is left alone.
    """
    if broker_reachable(bootstrap):
        yield False
        return
    env = dict(os.environ, TOKENPLAN_KAFKA_PORT=bootstrap.split(",")[0].rpartition(":")[2])
    subprocess.run([str(LOCAL_KAFKA), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        yield True
    finally:
        subprocess.run([str(LOCAL_KAFKA), "stop"], check=False, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_post(url: str, body: dict, headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> tuple[int, dict]:
    """(status, JSON body) of a POST with a JSON body; 4xx/5xx answers are returned, not raised."""
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read() or b"{}")


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, dict]:
    """(status, JSON body) of a GET; 5xx answers are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read() or b"{}")


@dataclass
class Namespace:
    """Fresh topic prefix and app id, so tests never see each other's data."""

    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")

    @property
    def topic_prefix(self) -> str:
        return f"{self.name}.tokenplan."

    @property
    def app_id(self) -> str:
        return f"{self.name}-tokenplan"

    def topic(self, short_name: str) -> str:
        return f"{self.topic_prefix}{short_name}"


@dataclass
class WorkerProcess:
    """One `tokenplan worker` subprocess with its own web port and data directory."""

    bootstrap: str
    namespace: Namespace
    data_dir: Path
    partitions: int = 8
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            TOKENPLAN_TOPIC_PREFIX=self.namespace.topic_prefix,
            TOKENPLAN_APP_ID=self.namespace.app_id,
            TOKENPLAN_PARTITIONS=str(self.partitions),
            TOKENPLAN_WEB_PORT=str(self.web_port),
            TOKENPLAN_DATA_DIR=str(self.data_dir),
        )
        env.update(self.extra_env)
        return env

    def start(self) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"worker-{self.web_port}.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            cwd=REPO, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    def wait_healthy(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; log: {self.log_tail()}")
            try:
                status, body = http_get(f"{self.url}/health", timeout_s=2.0)
                if status == 200:
                    return body
                last = body
            except OSError as error:
                last = error
            time.sleep(0.2)
        raise TimeoutError(f"worker not healthy in {timeout_s}s (last: {last}); log: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ServiceProcess:
    """A `tokenplan <command>` subprocess with an HTTP port (the gateway, upstream-sim)."""

    command: list[str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.command[0]}-{self.port}.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", *self.command, "--port", str(self.port)],
                                        cwd=REPO, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with {self.process.returncode}; log: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.health_path}", timeout=2.0) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return
                last = error
            except OSError as error:
                last = error
            time.sleep(0.2)
        raise TimeoutError(f"{self.command[0]} not ready in {timeout_s}s (last: {last}); log: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        return WorkerProcess.stop(self, sig, timeout_s)  # same protocol: signal, wait, kill

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"


def upstream_sim(log_dir: Path, *options: str) -> ServiceProcess:
    """`tokenplan upstream-sim` on a free port (health: its model list)."""
    return ServiceProcess(["upstream-sim", *options], log_dir, health_path="/v1/models")


def gateway_process(bootstrap: str, namespace: Namespace, worker_url: str, upstream_url: str, data_dir: Path,
                    cluster: str = "sgp", env: dict[str, str] | None = None) -> ServiceProcess:
    """`tokenplan gateway` in the namespace, with its spool and key secret under `data_dir`."""
    environment = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TOKENPLAN_TOPIC_PREFIX": namespace.topic_prefix,
                   "TOKENPLAN_KEY_SECRET_FILE": str(data_dir / "key-secret"),
                   "TOKENPLAN_GATEWAY_SPOOL_DIR": str(data_dir / "spool"), **(env or {})}
    return ServiceProcess(["gateway", "--cluster", cluster, "--upstream", upstream_url, "--worker", worker_url],
                          data_dir, env=environment)
