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
hole in ledger-log (exit status 75)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run the streaming worker", description=HELP)
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


#: Set in the child process the command supervises (see `supervise`).
CHILD_VARIABLE = "TOKENPLAN_WORKER_CHILD"
#: The ledger's exit status after a hole in ledger-log (streams.agents.ledger.EXIT_LEDGER_HOLE).
EXIT_LEDGER_HOLE = 75
#: Restarts after a hole before the command gives up (a hole that repeats is a bug to look at).
HOLE_RESTARTS_MAX = 20


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the supervising command dies (kill -9 included)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def supervise(argv: list[str]) -> int:
    """Run the faust worker as a child; start it again when it stopped at a ledger-log hole.

    Why: on a hole the ledger exits at once (no ack, no commit) rather than trusting
    faust's offset bookkeeping; starting again resumes from the committed offsets,
    which never pass the hole. Any other exit status is the command's own.
    """
    import os
    import signal
    import subprocess
    import time

    env = dict(os.environ, **{CHILD_VARIABLE: "1"})
    restarts = 0
    while True:
        child = subprocess.Popen([sys.executable, "-m", "streams.cli", *argv], env=env, preexec_fn=_die_with_parent)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, _frame: child.send_signal(number))
        code = child.wait()
        if code != EXIT_LEDGER_HOLE or restarts >= HOLE_RESTARTS_MAX:
            return code
        restarts += 1
        print(f"tokenplan worker: restarting after a ledger-log hole ({restarts}/{HOLE_RESTARTS_MAX})",
              file=sys.stderr, flush=True)
        time.sleep(1.0)


def run(args: argparse.Namespace) -> int:
    import os

    if not os.environ.get(CHILD_VARIABLE):
        return supervise(["worker", "--loglevel", args.loglevel])
    return run_faust(args)


def run_faust(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from faust.worker import Worker

    from streams.app import app, settings, topic_specs
    from streams.topic_admin import TopicLayoutError, ensure_topics

    logging.basicConfig(level=args.loglevel.upper())
    try:
        asyncio.run(ensure_topics(settings, topic_specs()))
    except TopicLayoutError as error:
        print(f"tokenplan worker: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the broker is unreachable or refuses: say so, plainly
        print(f"tokenplan worker: cannot prepare topics on {settings.bootstrap_servers}: {error!r}", file=sys.stderr)
        return 2
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # faust's loop and its consumer thread's
    class LeveledWorker(Worker):
        """faust's Worker leaves the root logger at DEBUG whatever the level asked, so every
        message sent builds a log record (measured: ~12% of the CPU); set it to the level."""

        def on_setup_root_logger(self, logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level or logging.INFO)

    worker = LeveledWorker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0
