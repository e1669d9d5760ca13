"""Integration harness: re-exports the worker launcher the benchmarks share (streams.localrun)."""
from streams.localrun import (KAFKA_READY, LOCAL_KAFKA, REPO, WORKER_READY_TIMEOUT_S, Namespace,  # noqa: F401
                              WorkerProcess, broker_reachable, free_port, http_get, http_post)
