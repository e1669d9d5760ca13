"""Where a worker's time goes under a live load: `python -m bench.live_profile [--rate 3000]`.

The stop-service row of `tokenplan bench` at half the pipeline rate: a worker whose
100 busy accounts got 300 usage events each, then the bench's background load at
`--rate` for `--seconds`. Meanwhile py-spy (`pip install -e '.[profile]'`) samples every
process of the worker for `--profile-seconds` and the folded stacks are summed per
process and per frame of ours. Prints what the worker applied against what was sent,
the CPU each process used, and the top frames. Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu import cpu_seconds, process_tree
from bench.pipeline import (LOAD_SCRIPT, BenchConfig, bring_to_steady_state, consumed, recent_day, stamp,
                            start_loaded_worker)
from deploy.localrun import local_broker

__all__ = ["main"]

#: py-spy's sampling rate (samples per second per thread).
SAMPLE_RATE = 100


def py_spy() -> str:
    """py-spy beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[profile]'")
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        return "?"


def summarize(raw: Path, top: int) -> str:
    """Per process: samples, and the `top` frames (self and inclusive) by share of its samples."""
    by_process: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        process = frames[0]
        totals[process] += count
        by_process[process][frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[process][frame] += count
    out = []
    for process, total in totals.most_common():
        out.append(f"\n== {process}: {total} samples")
        out.append("   self:")
        out += [f"   {100 * n / total:5.1f}%  {frame}" for frame, n in by_process[process].most_common(top)]
        out.append("   inclusive (ours and the libraries' entry points):")
        ours = [(f, n) for f, n in inclusive[process].most_common(top * 8)
                if "streams/" in f or "aiokafka" in f or "faust" in f or "rocksdict" in f]
        out += [f"   {100 * n / total:5.1f}%  {frame}" for frame, n in ours[:top * 2]]
    return "\n".join(out)


async def run(args: argparse.Namespace) -> None:
    with local_broker(args.bootstrap) as _started:
        config = BenchConfig(bootstrap=args.bootstrap, work_dir=Path(tempfile.mkdtemp(prefix="tokenplan-profile-")))
        worker, ns, background = await start_loaded_worker(config, "profile")
        try:
            busy = background[:config.busy_accounts]
            warm = await bring_to_steady_state(config, worker, ns, busy)
            print(f"steady state: {warm['events']:,} events in {warm['seconds']} s", flush=True)
            load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, args.bootstrap, ns.topic("usage"),
                                     str(args.rate), str(args.seconds), "bg-", str(len(busy)),
                                     stamp(recent_day())], stdout=subprocess.PIPE, text=True)
            await asyncio.sleep(min(5.0, args.seconds / 4))
            pids = process_tree(worker.process.pid)
            cpu_before = {pid: cpu_seconds(pid) for pid in pids}
            applied_before, began = consumed(worker, ns), time.monotonic()
            raw = Path(config.work_dir) / "profile.txt"
            spy = subprocess.run([py_spy(), "record", "--subprocesses", "--nonblocking",
                                  "-p", str(worker.process.pid), "-d", str(args.profile_seconds), "-r",
                                  str(SAMPLE_RATE), "-f", "raw", "-o", str(raw)], capture_output=True, text=True)
            elapsed = time.monotonic() - began
            applied = consumed(worker, ns) - applied_before
            cpu = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in pids}
            load.wait()
            print(f"applied {applied / elapsed:,.0f} ledger-log records/s during the profile")
            for pid in pids:
                print(f"cpu {cpu[pid] / elapsed:4.2f} cores  pid {pid}  {command_of(pid)}")
            if spy.returncode != 0:
                print(f"py-spy failed: {spy.stderr.strip()[-400:]}")
                return
            print(summarize(raw, args.top))
        finally:
            worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=int, default=3000, help="background usage events/s (default 3000)")
    parser.add_argument("--seconds", type=float, default=40.0, help="load duration (default 40)")
    parser.add_argument("--profile-seconds", type=int, default=20, help="py-spy duration (default 20)")
    parser.add_argument("--top", type=int, default=15, help="frames listed per process (default 15)")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
