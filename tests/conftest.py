"""Shared fixtures. Integration tests (marked `integration`) get the real broker."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.localrun import Namespace, WorkerProcess, local_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker at KAFKA_BOOTSTRAP_SERVERS, started with deploy/local-kafka when none answers.

    A broker we started is stopped (and its data removed) at the end of the session;
    a broker that was already running is left alone.
    """
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with local_broker(bootstrap):
        yield bootstrap


@pytest.fixture
def namespace() -> Namespace:
    return Namespace()


@pytest.fixture
def start_worker(kafka_bootstrap: str, namespace: Namespace, tmp_path: Path) -> Iterator:
    """Factory: start a real `tokenplan worker` subprocess in this test's namespace."""
    workers: list[WorkerProcess] = []

    def start(*, name: str = "w0", partitions: int = 8, wait: bool = True, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(kafka_bootstrap, namespace, tmp_path / name, partitions=partitions,
                               extra_env=env or {}).start()
        workers.append(worker)
        if wait:
            worker.wait_healthy()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def ns() -> Namespace:
    """A namespace shared by the tests of one module (with `worker`)."""
    return Namespace()


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, ns: Namespace, tmp_path_factory) -> Iterator[WorkerProcess]:
    """One worker for all tests of a module: scenarios on distinct accounts, one start-up."""
    process = WorkerProcess(kafka_bootstrap, ns, tmp_path_factory.mktemp("module-worker")).start()
    process.wait_healthy()
    yield process
    process.stop()
