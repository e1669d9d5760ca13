"""`tokenplan replay EVENTS.jsonl [--as-of T] [--out FILE]`: fold a log and print the balances."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

import orjson

from schemas.events import parse_instant
from streams import gc_policy
from streams.config import limits_from_env, partitions_from_env
from streams.ledger.catalog import load_catalog
from streams.ledger.fold import Fold

HELP = "replay an events file (JSON lines) or the ledger-log in Kafka and print every account's view"
DESCRIPTION = """\
Read events (one JSON object per line, '-' for stdin) in file order, or with
--from-kafka the ledger's persisted input log, apply the rulebook, and print JSON:
  {"as_of": T, "accounts": {ACCOUNT: {"status", "tier", "period", "credits_limit",
   "credits_used", "credits_remaining", "valid_from", "valid_until"}},
   "rejected": [{"event_id", "reason", ...}]}
status is active | exhausted | expired | none, for the package valid at --as-of.
Credits are decimal strings. Exit 0 on success, 2 on unusable input."""


#: Files above this size show a progress bar on stderr even when it is not a TTY.
PROGRESS_BYTES_MIN = 8 * 1024 * 1024


class UsageError(Exception):
    """Unusable command input: the command prints the message and exits 2."""


def parse_as_of(text: str | None) -> datetime:
    """--as-of / --at: RFC 3339 with offset; default the current time (commands may read the clock)."""
    if text is None:
        return datetime.now(timezone.utc)
    try:
        return parse_instant(text)
    except ValueError as error:
        raise UsageError(f"invalid instant {text!r}: {error}") from error


def open_events(path: str) -> tuple[BinaryIO, int]:
    """Open the events file ('-' = stdin) in binary; returns (stream, size or 0)."""
    if path == "-":
        return sys.stdin.buffer, 0
    try:
        return open(path, "rb"), os.path.getsize(path)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error


def replay_into(ledger: Fold, path: str, *, progress: bool | None = None) -> Fold:
    """Feed every non-blank line of `path` to `ledger` in file order."""
    with gc_policy.bulk():
        return _replay_into(ledger, path, progress)


def _replay_into(ledger: Fold, path: str, progress: bool | None) -> Fold:
    stream, size = open_events(path)
    show = progress if progress is not None else (sys.stderr.isatty() or size >= PROGRESS_BYTES_MIN)
    try:
        if show and size:
            _replay_with_progress(ledger, stream, size)
        else:
            add = ledger.add
            for line in stream:  # no generator in between: this loop runs once per event
                if line.strip():
                    add(line)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return ledger


def _replay_with_progress(ledger: Fold, stream: BinaryIO, size: int) -> None:
    """Same loop with a rich progress bar on stderr (never stdout)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    columns = (TextColumn("replay"), BarColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("replay", total=size)
        done = 0
        for count, line in enumerate(stream, 1):
            done += len(line)
            if line.strip():
                ledger.add(line)
            if count % 20000 == 0:
                bar.update(task, completed=done)
        bar.update(task, completed=size)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `replay` subcommand."""
    parser = subparsers.add_parser("replay", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("events", metavar="EVENTS.jsonl", nargs="?", help="events file, or - for stdin")
    source.add_argument("--events", dest="events_option", metavar="FILE", help="same as EVENTS.jsonl")
    source.add_argument("--from-kafka", action="store_true",
                        help="replay the ledger's persisted input log (tokenplan.ledger-log) from the beginning "
                             "up to its current end, with the live ledger's code; KAFKA_BOOTSTRAP_SERVERS, "
                             "TOKENPLAN_TOPIC_PREFIX and the TOKENPLAN_*_MAX limits as for the worker")
    parser.add_argument("--as-of", metavar="T",
                        help="RFC 3339 instant with offset for the views (default: now)")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a TTY or the input is large)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="fold in N processes (default 1: this process only). The work is split by "
                             "partition, as the live worker groups accounts (TOKENPLAN_PARTITIONS, default 8; "
                             "each process owns the partitions p with p %% N == its index), so the per-partition "
                             "rules see the same events in the same order: the output is identical to one "
                             "process. The speed-up is bounded by the cores and by the partitions (N above "
                             "TOKENPLAN_PARTITIONS leaves processes idle). Files only, not --from-kafka")
    parser.set_defaults(func=run)


def replay_kafka(as_of: datetime, progress: bool | None) -> dict:
    """--from-kafka: the ledger-log through the live ledger's Processor (see streams.audit.kafka_replay)."""
    import asyncio

    from streams.config import Settings
    from streams.audit.kafka_replay import replay_ledger_log

    settings = Settings.from_env()
    show = progress if progress is not None else sys.stderr.isatty()
    with _kafka_progress(show) as on_progress, gc_policy.bulk():
        try:
            replayed = asyncio.run(replay_ledger_log(settings, load_catalog(), settings.limits, as_of, on_progress))
        except LookupError as error:
            raise UsageError(str(error)) from error
        except Exception as error:  # the broker is unreachable or refuses: say so, plainly
            raise UsageError(f"cannot read the ledger-log on {settings.bootstrap_servers}: {error!r}") from error
    return replayed.result(as_of)


@contextlib.contextmanager
def _kafka_progress(show: bool):
    """A rich progress line on stderr: events, events/s, lag to the end offsets."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    columns = (TextColumn("replay ledger-log"), BarColumn(),
               TextColumn("{task.completed:,.0f} events  {task.fields[rate]:,.0f}/s  lag {task.fields[lag]:,}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replay", total=None, rate=0.0, lag=0)

        def update(state) -> None:
            bar.update(task, completed=state.events, total=state.total, rate=state.rate, lag=state.lag)

        yield update


def write_output(result: dict, out: str | None) -> None:
    output = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    if out:
        try:
            with open(out, "wb") as handle:
                handle.write(output)
        except OSError as error:
            raise UsageError(f"cannot write {out}: {error.strerror}") from error
    else:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()


def replay_file_parallel(path: str, workers: int, as_of: datetime, progress: bool | None) -> dict:
    """--workers N > 1: `streams.audit.parallel`.

    Every worker reads the whole file, so stdin (or a pipe) is first spooled to a
    temporary file.
    """
    import shutil
    import stat
    import tempfile

    from streams.audit.parallel import replay_parallel

    partitions, limits = partitions_from_env(), limits_from_env()
    stream, _ = open_events(path)  # a readable source, or a UsageError now
    with contextlib.ExitStack() as stack:
        try:
            if stream is not sys.stdin.buffer and stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                stream.close()
            else:
                spool = stack.enter_context(tempfile.NamedTemporaryFile(prefix="tokenplan-replay-",
                                                                        suffix=".jsonl"))
                shutil.copyfileobj(stream, spool, 1 << 20)
                spool.flush()
                path = spool.name
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        size = os.path.getsize(path)
        show = progress if progress is not None else (sys.stderr.isatty() or size >= PROGRESS_BYTES_MIN)
        return replay_parallel(path, workers, partitions, as_of, limits, progress=bool(show and size))


def run(args: argparse.Namespace) -> int:
    """Replay and print; 2 with a message on stderr for unusable input."""
    try:
        workers = 1 if args.workers is None else args.workers
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        if args.from_kafka and args.workers is not None:
            raise UsageError("--workers is not supported with --from-kafka (it splits a file by partition); "
                             "drop --workers, or replay an exported file")
        as_of = parse_as_of(args.as_of)
        if args.from_kafka:
            result = replay_kafka(as_of, args.progress)
        else:
            path = args.events if args.events is not None else args.events_option
            if workers > 1:
                result = replay_file_parallel(path, workers, as_of, args.progress)
            else:
                ledger = Fold(load_catalog(), limits_from_env(), partitions=partitions_from_env())
                result = replay_into(ledger, path, progress=args.progress).result(as_of)
        write_output(result, args.out)
    except UsageError as error:
        print(f"tokenplan replay: {error}", file=sys.stderr)
        return 2
    return 0
