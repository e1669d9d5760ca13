#!/usr/bin/env python3
"""`make run`: local broker + worker + traffic simulator, until Ctrl-C.

Starts deploy/local-kafka unless a broker already answers, then `tokenplan worker`
(HTTP on TOKENPLAN_WEB_PORT, default 6066), then `tokenplan simulate`. Ctrl-C (or SIGTERM) stops the children in reverse order; a broker we
started is stopped and its data removed, together with the worker's state directory,
so the next `make run` starts clean.
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

    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, TOKENPLAN_DATA_DIR=str(DATA_DIR))
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
    """Start the worker, then the simulator; wait until one exits or Ctrl-C; stop both."""
    children: list[subprocess.Popen] = []
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        worker = subprocess.Popen([str(VENV_BIN / "tokenplan"), "worker"], env=env)
        children.append(worker)
        wait_healthy(worker)
        children.append(subprocess.Popen([str(VENV_BIN / "tokenplan"), "simulate"], env=env))
        print(
            f"\nRunning:\n  Kafka       {BOOTSTRAP}{' (started by make run)' if started_broker else ' (already running)'}\n"
            f"  worker      http://127.0.0.1:{WEB_PORT}/health   state in {DATA_DIR}\n"
            "  simulator   tokenplan simulate\n"
            "Ctrl-C stops all of it.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    finally:
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
