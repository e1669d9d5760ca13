"""`tokenplan worker`: run the faust worker (agents, tables, HTTP endpoint)."""
from __future__ import annotations

import argparse
import sys

HELP = """Start a tokenplan worker: consumes the input topics, keeps account state in
RocksDB-backed faust tables, and serves GET /health (and account lookups) on
TOKENPLAN_WEB_HOST:TOKENPLAN_WEB_PORT. Configuration comes from the environment:
KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092), TOKENPLAN_WEB_PORT (6066),
TOKENPLAN_DATA_DIR (.data), TOKENPLAN_PARTITIONS (8), TOKENPLAN_APP_ID (tokenplan),
TOKENPLAN_TOPIC_PREFIX (tokenplan.). Stop it with Ctrl-C or SIGTERM. The command
supervises the faust worker process and starts it again if the ledger stopped at a
hole in ledger-log or could not deliver a unit of work (exit status 75)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run the streaming worker", description=HELP)
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


#: Set in the child processes the command supervises: `faust` or `sequencer` (see `supervise`).
CHILD_VARIABLE = "TOKENPLAN_WORKER_CHILD"
#: The ledger's exit status when it must start again from its committed offsets (a hole in
#: ledger-log, a unit of work Kafka would not take): streams.worker.applier.EXIT_RESTART.
EXIT_RESTART = 75
#: Restarts before the command gives up (one that keeps repeating is a fault to look at).
RESTARTS_MAX = 20


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the supervising command dies (kill -9 included)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def supervise(loglevel: str) -> int:
    """Run the faust worker (and the sequencer, in its own process by default) as children.

    A child that exits with status 75 asked to start again from its committed offsets
    (the ledger met a hole in ledger-log, or a unit of work Kafka would not take; the
    ledger exits at once, no ack, no commit, rather than trust faust's offset
    bookkeeping): it is started again. Any other exit of the faust worker ends the
    command with its status, stopping the sequencer; SIGTERM/SIGINT go to both.
    """
    import os
    import signal
    import subprocess
    import time

    from streams.config import Settings

    roles = ["faust"] + (["sequencer"] if Settings.from_env().sequencer == "process" else [])
    children: dict[str, subprocess.Popen] = {}
    stopping: list[int] = []

    def start(role: str) -> None:
        env = dict(os.environ, **{CHILD_VARIABLE: role})
        children[role] = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--loglevel", loglevel],
                                          env=env, preexec_fn=_die_with_parent)

    def forward(number: int, _frame) -> None:
        stopping.append(number)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(number)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    for role in roles:
        start(role)
    restarts = 0
    while True:
        time.sleep(0.2)
        for role, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            if code == EXIT_RESTART and not stopping and restarts < RESTARTS_MAX:
                restarts += 1
                print(f"tokenplan worker: {role} restarting from its committed offsets ({restarts}/{RESTARTS_MAX})",
                      file=sys.stderr, flush=True)
                start(role)
                continue
            if role == "faust" or stopping:
                for other in children.values():
                    if other.poll() is None:
                        other.send_signal(signal.SIGTERM)
                for other in children.values():
                    try:
                        other.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        other.kill()
                return children["faust"].returncode or 0
            print(f"tokenplan worker: the sequencer exited with {code}; starting it again", file=sys.stderr, flush=True)
            restarts += 1
            start(role)


def run(args: argparse.Namespace) -> int:
    import os

    role = os.environ.get(CHILD_VARIABLE)
    if not role:
        return supervise(args.loglevel)
    if role == "sequencer":
        return run_sequencer(args)
    return run_faust(args)


def run_sequencer(args: argparse.Namespace) -> int:
    """The sequencer's own process (TOKENPLAN_SEQUENCER=process)."""
    import logging

    from streams.worker.sequencer import run_process
    from streams.config import Settings

    logging.basicConfig(level=args.loglevel.upper())
    return run_process(Settings.from_env(), args.loglevel)


def run_faust(args: argparse.Namespace) -> int:
    """The faust worker's own process: the composition root builds and runs it."""
    from streams.config import Settings
    from streams.worker.main import run as run_worker

    return run_worker(Settings.from_env(), args.loglevel)
