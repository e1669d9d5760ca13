"""The worker's composition root: settings -> app, topics, table, runtime, agents, views, services.

Everything the faust worker runs is built here, once, from one `Settings`; no module of
`streams.worker` creates anything when imported. `tokenplan worker` calls `run`; tests
call `build` in process (it connects to nothing).
"""
from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from streams import gc_policy
from streams.config import Settings
from streams.ledger import load_catalog
from streams.worker import applier, clock, faust_fixes, policy, web
from streams.worker.app import Wiring, wire
from streams.worker.metrics import WorkerMetrics, for_worker
from streams.worker.runtime import WorkerRuntime
from streams.worker.sequencer import Sequencer
from streams.worker.topic_admin import TopicLayoutError, ensure_topics


@dataclass
class Worker:
    """What `build` made: the wiring, the runtime state, the applier and the metrics."""

    wiring: Wiring
    runtime: WorkerRuntime
    applier: applier.Applier
    metrics: WorkerMetrics


def build(settings: Settings) -> Worker:
    """The faust app with every agent, timer, view and service of a worker, for `settings`."""
    faust_fixes.apply(settings.consumer_fetch_wait_ms)  # before the app's consumer exists: faust-streaming #606
    wiring = wire(settings, load_catalog())
    runtime = WorkerRuntime(settings)
    metrics = for_worker(wiring)  # this worker's own registry (GET /metrics)
    built = Worker(wiring, runtime, applier.register(wiring, runtime, metrics), metrics)
    clock.register(wiring, runtime)
    policy.register(wiring, metrics)
    web.register(wiring, runtime, metrics.exposition)
    if settings.sequencer == "inline":
        wiring.app.service(Sequencer(settings))
    register_gc_freeze(wiring)
    return built


def register_gc_freeze(wiring: Wiring) -> None:
    """Once start-up and the first table recovery are over, freeze what is alive (gc_policy).
    faust starts app tasks when the worker is ready; the wait makes the order explicit."""

    async def freeze_after_recovery() -> None:
        await wiring.app.tables.recovery.completed.wait()
        gc_policy.freeze()

    wiring.app.task(freeze_after_recovery)


def run(settings: Settings, loglevel: str) -> int:
    """Create the topics, then run the faust worker until it is stopped."""
    from faust.worker import Worker as FaustWorker

    logging.basicConfig(level=loglevel.upper())
    gc_policy.tune(settings.gc_gen0_threshold)
    built = build(settings)
    try:
        asyncio.run(ensure_topics(settings, built.wiring.topic_specs()))
    except TopicLayoutError as error:
        print(f"tokenplan worker: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the broker is unreachable or refuses: say so, plainly
        print(f"tokenplan worker: cannot prepare topics on {settings.bootstrap_servers}: {error!r}", file=sys.stderr)
        return 2
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # faust's loop and its consumer thread's

    class LeveledWorker(FaustWorker):
        """faust's Worker leaves the root logger at DEBUG whatever the level asked, so every
        message sent builds a log record (measured: ~12% of the CPU); set it to the level."""

        def on_setup_root_logger(self, logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level or logging.INFO)

    LeveledWorker(built.wiring.app, loglevel=loglevel).execute_from_commandline()
    return 0
