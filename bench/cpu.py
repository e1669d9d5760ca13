"""Where the machine's CPU goes during a measurement (Linux /proc), and waiting until it rests.

On 2 cores every process is in every latency: the bench's own clients, both workers,
the broker, RocksDB's compactions after a load. These helpers let a section say how
much CPU each party took, and start a latency measurement only once the work left by
the section before it (compactions, a second worker's recovery) has finished.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

#: Busy cores (all processes) under which the machine counts as resting: the broker and
#: two idle workers (timers, fetch loops, the sequencer) take 0.24-0.28 here; a RocksDB
#: compaction or a recovery keeps a whole core busy.
IDLE_CORES = 0.4
#: How long it must stay under IDLE_CORES.
IDLE_WINDOW_S = 2.0


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: `tokenplan worker` supervises the faust worker and the
    sequencer as child processes, the faust worker started again after a ledger-log hole."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])  # after "(comm)": state, ppid
            parents.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(parents.get(current, []))
    return sorted(tree)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine, all cores (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK


def faust_pid(root_pid: int) -> int:
    """The faust worker under a `tokenplan worker` process (its other child is the sequencer)."""
    for pid in process_tree(root_pid)[1:]:
        try:
            if b"sequencer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return root_pid


async def wait_machine_idle(timeout_s: float, idle_cores: float = IDLE_CORES,
                            window_s: float = IDLE_WINDOW_S) -> dict:
    """Until the machine's busy cores stay under `idle_cores` for `window_s`, at most `timeout_s`.

    Returns how long it waited, the last window's busy cores and whether it came to rest
    (a measurement after a timeout says so in the report rather than failing the run).
    """
    began = time.monotonic()
    busy_cores = float("inf")
    while time.monotonic() - began < timeout_s:
        before = machine_busy_s()
        await asyncio.sleep(window_s)
        busy_cores = (machine_busy_s() - before) / window_s
        if busy_cores < idle_cores:
            break
    return {"waited_s": round(time.monotonic() - began, 1), "busy_cores": round(busy_cores, 2),
            "idle": busy_cores < idle_cores}
