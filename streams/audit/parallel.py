"""`tokenplan replay --workers N`: the replay fold split across N processes by partition.

Each worker process reads the whole file and folds only the lines it owns through
its own `Fold`; the parent merges the workers' results into exactly the JSON of a
single-process `Fold.result(as_of)` over the same file.

Why by partition, not by account: the ledger keeps per-partition state (the event
memory and the event-time high-water mark the lateness rule compares usage with), so
a worker must see every event of the partitions it owns, in file order. A line whose
`account_id` is a non-empty string belongs to `account_partition(account_id,
partitions)`; worker w owns the partitions p with p % N == w.

Lines without a routable account_id (a global `quota.refreshed`, undecodable lines,
non-object JSON) go to every worker: a global refresh must reach every account and
be remembered for accounts opened later. What such a line yields is either the same
in every worker (a decode rejection, a global duplicate/limit rejection) or a
per-account rejection of the broadcast (only the worker that owns the account knows
it). So each rejection has exactly one *owner* worker, a function of the rejection
alone: the owner of its account_id's partition, or worker 0 when it names no
account. Only the owner keeps it.

Merged order = single-process order: rejections are sorted by (line number, then,
within a broadcast line, the line at which the rejected account first entered the
ledger, which is the order `Fold` broadcasts in, then position within the worker).

Pure stdlib multiprocessing and the core: no faust, no Kafka.
"""
from __future__ import annotations

import gc
import inspect
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

import orjson

from schemas.events import format_instant
from streams import gc_policy
from streams.ledger.catalog import Catalog, load_catalog
from streams.ledger.fold import Fold
from streams.ledger.limits import Limits
from streams.ledger.partitioning import account_partition

__all__ = ["make_ledger", "replay_parallel", "line_account"]

#: Progress lines per worker (at every 1/PROGRESS_STEPS of the file).
PROGRESS_STEPS = 10


def make_ledger(catalog: Catalog, limits: Limits, partitions: int) -> Fold:
    """A Fold grouping accounts by `partitions`, when this Fold takes the argument."""
    if "partitions" in inspect.signature(Fold).parameters:
        return Fold(catalog, limits, partitions=partitions)
    return Fold(catalog, limits)


def line_account(line: bytes) -> str | None:
    """The account a raw line belongs to: its `account_id` when a non-empty string, else None.

    None means "every worker": global refreshes, undecodable lines, non-objects. The
    decoder parses the same bytes with the same parser (orjson), so a line routed here
    is decoded with this very account_id (or rejected).
    """
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    account_id = data.get("account_id")
    return account_id if type(account_id) is str and account_id else None


def _partition_of(account_id: str, partitions: int) -> int | None:
    try:
        return account_partition(account_id, partitions)
    except UnicodeError:  # a lone surrogate: not routable; the decoder decides for everyone
        return None


def _start_method() -> str:
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def replay_parallel(path: str, workers: int, partitions: int, as_of: datetime, limits: Limits, *,
                    progress: bool = False) -> dict:
    """Fold `path` in `workers` processes; returns exactly `Fold.result(as_of)` of one process.

    `path` must be a regular file (every worker reads it). `progress`: each worker
    prints a short progress line to stderr at every tenth of the file.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    tasks = [(path, worker, workers, partitions, as_of, limits, progress) for worker in range(workers)]
    if workers == 1:
        outcomes = [_worker(*tasks[0])]
    else:
        context = multiprocessing.get_context(_start_method())
        gc.collect()
        gc.freeze()  # forked children: the collector does not touch (and copy) the parent's pages
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_worker, *task) for task in tasks]
                outcomes = [future.result() for future in futures]
        finally:
            gc.unfreeze()
    return _merge(outcomes, as_of)


def _merge(outcomes: list[tuple[dict, list]], as_of: datetime) -> dict:
    accounts: dict = {}
    keyed: list = []
    for worker, (views, rejected) in enumerate(outcomes):
        for account_id in views:
            if account_id in accounts:
                raise AssertionError(f"account {account_id!r} folded by two workers")
        accounts.update(views)
        keyed.extend((line, first_seen, worker, position, entry)
                     for line, first_seen, position, entry in rejected)
    keyed.sort(key=lambda item: item[:4])
    return {
        "as_of": format_instant(as_of),
        "accounts": {account_id: accounts[account_id] for account_id in sorted(accounts)},
        "rejected": [item[4] for item in keyed],
    }


def _worker(path: str, worker: int, workers: int, partitions: int, as_of: datetime, limits: Limits,
            progress: bool) -> tuple[dict, list]:
    """One worker: fold its partitions' lines and every unroutable line.

    Returns (account views, [(line number, first-seen line or -1, position, entry)])
    with only the rejections this worker owns (see the module docstring).
    """
    with gc_policy.bulk():
        return _fold(path, worker, workers, partitions, as_of, limits, progress)


def _fold(path: str, worker: int, workers: int, partitions: int, as_of: datetime, limits: Limits,
          progress: bool) -> tuple[dict, list]:
    ledger = make_ledger(load_catalog(), limits, partitions)
    owned = [p % workers == worker for p in range(partitions)]
    rejected = ledger.rejected
    accounts = ledger.accounts
    feed = ledger.add  # reads only `rejected` and `accounts`: no step results needed
    #: account -> the line at which it entered ledger.accounts (Fold broadcasts in that order)
    first_seen: dict[str, int] = {}
    #: (line number, first-seen or -1, index into ledger.rejected) of the rejections we own
    marks: list[tuple[int, int, int]] = []
    route: dict[str, bool] = {}
    size = os.path.getsize(path) if progress else 0
    step = max(size // PROGRESS_STEPS, 1)
    next_report, done = step, 0
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, 1):
            if progress:
                done += len(line)
                if done >= next_report and done < size:
                    _report(worker, workers, done, size)
                    next_report = (done // step + 1) * step
            if not line.strip():
                continue
            account_id = line_account(line)
            mine = route.get(account_id) if account_id is not None else None
            if account_id is not None and mine is None:
                partition = _partition_of(account_id, partitions)
                mine = route[account_id] = None if partition is None else owned[partition]
            if mine is False:
                continue
            before = len(rejected)
            feed(line)
            if mine:  # a routed line: everything it yields is ours
                if account_id not in first_seen and account_id in accounts:
                    first_seen[account_id] = number
                for index in range(before, len(rejected)):
                    marks.append((number, -1, index))
                continue
            for index in range(before, len(rejected)):  # fed to every worker: keep what we own
                owner_account = rejected[index].account_id
                if _owner(owner_account, partitions, workers) == worker:
                    marks.append((number, first_seen.get(owner_account, -1), index))
    if progress and size:
        _report(worker, workers, size, size)
    result = ledger.result(as_of)
    entries = result["rejected"]
    if len(entries) != len(rejected):
        raise AssertionError("Fold.result lists its rejections in another shape")
    return result["accounts"], [(line, first, index, entries[index]) for line, first, index in marks]


def _owner(account_id: str | None, partitions: int, workers: int) -> int:
    """The one worker that keeps a rejection of a line every worker was fed."""
    if type(account_id) is not str or not account_id:
        return 0
    partition = _partition_of(account_id, partitions)
    return 0 if partition is None else partition % workers


def _report(worker: int, workers: int, done: int, size: int) -> None:
    """One short line on stderr (under PIPE_BUF: lines of several workers never interleave)."""
    percent = 100 * done // size if size else 100
    text = f"replay worker {worker + 1}/{workers}: {percent:3d}% of {size / 1e6:,.1f} MB\n"
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):
        pass
