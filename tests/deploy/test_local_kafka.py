"""deploy/local-kafka's refusals and the readiness probe, without starting a broker."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from deploy.localrun import KAFKA_READY, LOCAL_KAFKA, free_port


def run_local_kafka(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, TOKENPLAN_KAFKA_HOME=str(tmp_path / "kafka-home"), **env)
    return subprocess.run([str(LOCAL_KAFKA), *args], env=environment, capture_output=True, text=True, timeout=60)


def test_start_refuses_a_taken_port_with_a_clear_message(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_local_kafka(tmp_path, "start", TOKENPLAN_KAFKA_PORT=str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr


def test_start_says_java_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3", "cat", "dirname", "grep", "mkdir", "sed", "rm", "cp", "cmp", "touch"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    result = run_local_kafka(tmp_path, "start", PATH=str(bin_dir), TOKENPLAN_KAFKA_PORT=str(free_port()))
    assert result.returncode == 1
    assert "Java is missing" in result.stderr


def test_status_of_a_broker_that_never_started(tmp_path):
    result = run_local_kafka(tmp_path, "status", TOKENPLAN_KAFKA_PORT=str(free_port()))
    assert result.returncode == 3
    assert result.stdout.startswith("stopped bootstrap=127.0.0.1:")
    assert "server.log" in result.stdout


def test_usage_on_unknown_subcommand(tmp_path):
    result = run_local_kafka(tmp_path, "explode")
    assert result.returncode == 2
    assert "usage: deploy/local-kafka" in result.stderr


def test_readiness_probe_fails_fast_when_nothing_listens():
    result = subprocess.run([sys.executable, str(KAFKA_READY), "127.0.0.1", str(free_port()), "0"], timeout=30)
    assert result.returncode == 1
