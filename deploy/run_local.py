#!/usr/bin/env python3
"""`make run`: local broker + worker + upstream-sim + gateway + SDK traffic, until Ctrl-C.

Starts deploy/local-kafka unless a broker already answers, then `tokenplan worker`
(HTTP on TOKENPLAN_WEB_PORT, default 6066), `tokenplan upstream-sim` (TOKENPLAN_UPSTREAM_PORT,
default 9000), `tokenplan gateway` (TOKENPLAN_GATEWAY_PORT, default 8080), then
`tokenplan gateway-traffic --exhaust`: the usage in the ledger comes from real SDK
requests through the gateway. TOKENPLAN_RUN_SIMULATE=1 also starts the old direct-to-Kafka
`tokenplan simulate`. Ctrl-C (or SIGTERM) stops the children in reverse order; a broker
we started is stopped and its data removed, together with the run's data directory
(worker state, the gateway's key secret and spool, the logs), so the next `make run`
starts clean.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
WEB_PORT = int(os.environ.get("TOKENPLAN_WEB_PORT", "6066"))
DATA_DIR = Path(os.environ.get("TOKENPLAN_DATA_DIR", REPO / ".data" / "run"))
UPSTREAM_PORT = int(os.environ.get("TOKENPLAN_UPSTREAM_PORT", "9000"))
GATEWAY_PORT = int(os.environ.get("TOKENPLAN_GATEWAY_PORT", "8080"))
DASHBOARD_PORT = int(os.environ.get("TOKENPLAN_DASHBOARD_PORT", "6070"))
#: "1": the old simulator (usage written to Kafka directly) runs beside the SDK traffic.
DIRECT_SIMULATOR = os.environ.get("TOKENPLAN_RUN_SIMULATE", "") == "1"
WORKER_READY_TIMEOUT_S = 90.0


def wait_healthy(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the worker exited with {process.returncode}; see its output above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the worker did not become healthy within {WORKER_READY_TIMEOUT_S}s")


def _terminate(_signum: int, _frame: object) -> None:
    """SIGTERM stops everything the same way Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    from deploy.localrun import local_broker

    # The gateway's secret and spool live in the run's data dir: removed with it, so a
    # fresh run's keys topic and secret always match (and no old spool is replayed).
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, TOKENPLAN_DATA_DIR=str(DATA_DIR),
               TOKENPLAN_KEY_SECRET_FILE=str(DATA_DIR / "key-secret"),
               TOKENPLAN_GATEWAY_SPOOL_DIR=str(DATA_DIR / "gateway-spool"),
               TOKENPLAN_WORKER_URL=f"http://127.0.0.1:{WEB_PORT}",
               TOKENPLAN_PROJECTIONS_URL=f"sqlite:///{DATA_DIR / 'projections.db'}")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with local_broker(BOOTSTRAP) as started_broker:
            try:
                return run_children(env, started_broker)
            finally:
                if started_broker:  # the broker's data goes with it: drop the worker's state too
                    shutil.rmtree(DATA_DIR, ignore_errors=True)
    except KeyboardInterrupt:
        return 0
    finally:
        print("make run: stopped", flush=True)


def run_children(env: dict[str, str], started_broker: bool) -> int:
    """Start worker, upstream-sim, gateway, then the traffic; wait until one exits or Ctrl-C; stop all."""
    children: list[subprocess.Popen] = []
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        print(f"make run: starting the worker (http://127.0.0.1:{WEB_PORT}), upstream-sim "
              f"(http://127.0.0.1:{UPSTREAM_PORT}) and the gateway (http://127.0.0.1:{GATEWAY_PORT})", flush=True)
        worker = subprocess.Popen([str(VENV_BIN / "tokenplan"), "worker"], env=env)
        children.append(worker)
        wait_healthy(worker)
        for service in start_services(env):
            children.append(service.process)
            try:
                service.wait_ready()
            except (RuntimeError, TimeoutError) as error:  # a port in use, a crash: say which
                raise SystemExit(f"make run: {error}") from None
        print(banner(started_broker), flush=True)
        children.append(subprocess.Popen([str(VENV_BIN / "tokenplan"), "gateway-traffic", "--exhaust"], env=env))
        if DIRECT_SIMULATOR:
            children.append(subprocess.Popen([str(VENV_BIN / "tokenplan"), "simulate"], env=env))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    finally:
        stop_all(children)


def start_services(env: dict[str, str]) -> list:
    """upstream-sim, the gateway (sgp), the projector and the dashboard, logging to files in the run's data dir.

    Started together, waited on by the caller: the gateway's cache start-up overlaps
    the simulator's. Logs go to files so the terminal shows the traffic's live lines.
    """
    from deploy.localrun import ServiceProcess

    upstream = ServiceProcess(["upstream-sim"], DATA_DIR, port=UPSTREAM_PORT, env=env, health_path="/v1/models")
    gateway = ServiceProcess(["gateway", "--cluster", "sgp", "--upstream", f"http://127.0.0.1:{UPSTREAM_PORT}"],
                             DATA_DIR, port=GATEWAY_PORT, env=env)
    projector = Projector(DATA_DIR, env)
    dashboard = ServiceProcess(["dashboard"], DATA_DIR, port=DASHBOARD_PORT, env=env)
    return [upstream.start(), gateway.start(), projector.start(), dashboard.start()]


class Projector:
    """`tokenplan projector` (it has no HTTP port of its own to wait on; its log is its progress)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env, self.process = log_dir, env, None

    def start(self) -> "Projector":
        log = open(self.log_dir / "projector.log", "ab")
        self.process = subprocess.Popen([str(VENV_BIN / "tokenplan"), "projector"], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> None:
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"the projector exited with {self.process.returncode}; see {self.log_dir}/projector.log")


def banner(started_broker: bool) -> str:
    """What runs where, printed once everything answers (before the traffic's lines)."""
    broker = " (started by make run)" if started_broker else " (already running)"
    simulate = "\n  simulate    tokenplan simulate (usage straight to Kafka)" if DIRECT_SIMULATOR else ""
    return (f"\nRunning:\n  Kafka       {BOOTSTRAP}{broker}\n"
            f"  worker      http://127.0.0.1:{WEB_PORT}/health   state in {DATA_DIR}\n"
            f"  upstream    http://127.0.0.1:{UPSTREAM_PORT}/v1/models   log {DATA_DIR}/upstream-sim-{UPSTREAM_PORT}.log\n"
            f"  gateway     http://127.0.0.1:{GATEWAY_PORT}/health   OpenAI base_url http://127.0.0.1:{GATEWAY_PORT}/v1, "
            f"Anthropic base_url http://127.0.0.1:{GATEWAY_PORT}/anthropic\n"
            f"              log {DATA_DIR}/gateway-{GATEWAY_PORT}.log; a key: tokenplan keys issue --account ME\n"
            f"  projector   tokenplan projector -> {DATA_DIR}/projections.db   log {DATA_DIR}/projector.log\n"
            f"  DASHBOARD   http://127.0.0.1:{DASHBOARD_PORT}/   (accounts: http://127.0.0.1:{DASHBOARD_PORT}/accounts/ACCOUNT)\n"
            f"  traffic     tokenplan gateway-traffic --exhaust (real SDKs through the gateway){simulate}\n"
            f"  a quota     curl -s http://127.0.0.1:{WEB_PORT}/accounts/ACCOUNT/quota\n"
            "Ctrl-C stops all of it.\n")


def stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM in reverse start order (traffic first, worker last), then wait; kill stragglers."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
