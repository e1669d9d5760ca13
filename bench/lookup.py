"""The lookup measurement alone, with where its CPU goes: two idle workers, the bench's clients.

    python -m bench.lookup [--workers 2] [--accounts 200] [--seconds 8] [--concurrency 16,4]

What `tokenplan bench` measures in its live section (`bench.pipeline.lookup_latency`:
concurrent clients on the first worker, keys owned there and routed to the second), on
workers that have applied everything (`wait_caught_up`), without the stop-service
sections before it: a minute instead of the whole live section. Besides the latencies
it prints the CPU time per request of the client (this process) and of each faust
worker, and how much CPU other processes took meanwhile (the broker, other users of
the machine): on 2 cores every one of them is in the latency. Profile the asked worker
during a run with `py-spy record -p <faust pid printed> -f raw` (docs/performance.md).
Not a test: nothing asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import os

from bench.cpu import faust_pid
from bench.pipeline import (BenchConfig, lookup_with_cpu, produce_all, recent_day, wait_accounts_active,
                            wait_caught_up)
from bench.workload import stamp
from deploy.localrun import Namespace, WorkerProcess

async def start_workers(config: BenchConfig, count: int, accounts: list[str]) -> tuple[list[WorkerProcess], Namespace]:
    """`count` workers in a fresh namespace, `accounts` active on a max plan, the group settled."""
    ns = Namespace()
    workers = [WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-0").start()]
    workers[0].wait_healthy(timeout_s=120)
    await produce_all(config.bootstrap, ns.topic("plans"), [
        {"type": "plan.purchased", "event_id": f"buy-{a}", "occurred_at": stamp(recent_day()), "account_id": a,
         "tier": "max", "period": "monthly", "currency": "USD", "auto_renew": False} for a in accounts])
    await wait_accounts_active(workers[0], accounts)
    for index in range(1, count):
        workers.append(WorkerProcess(config.bootstrap, ns, config.work_dir / f"{ns.name}-{index}").start())
        workers[-1].wait_healthy(timeout_s=120)
    if count > 1:
        await asyncio.sleep(3.0)  # the rebalance, as the bench waits for it
        workers[0].wait_healthy(timeout_s=120)
    await wait_caught_up(workers[0], ns)
    return workers, ns


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", default="16,4", help="comma-separated client counts, one run each")
    args = parser.parse_args()
    config = BenchConfig(bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                         lookup_seconds=args.seconds)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    accounts = [f"bg-{index}" for index in range(args.accounts)]
    workers, _ns = await start_workers(config, args.workers, accounts)
    try:
        fausts = [faust_pid(worker.process.pid) for worker in workers]
        print(f"workers {[worker.url for worker in workers]}, faust pids {fausts}", flush=True)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            result = await lookup_with_cpu(config, workers, accounts, concurrency)
            print(f"{concurrency} clients: {result['requests_per_s']:,.0f} requests/s; "
                  f"local {result['local']}; routed {result['routed']}; "
                  f"CPU ms per request {result['cpu_ms_per_request']}; "
                  f"other processes {result['other_processes_cores']} cores", flush=True)
    finally:
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    asyncio.run(main())
