"""`tokenplan bench`: measure the worker on the real broker and write the report."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson

HELP = ("benchmark: raw-client baseline, pipeline, stop-service latency, lookups, replay, gateway, projections, soak "
        "(writes a report)")
DESCRIPTION = """\
Runs the sections of bench/pipeline.py against the broker at
KAFKA_BOOTSTRAP_SERVERS (started with deploy/local-kafka when none answers, and stopped
afterwards), in fresh topic namespaces, and writes the figures as JSON (--out) and as
Markdown (--markdown). The gateway section (bench/gateway.py) times the quota cache's
decision in process, then runs a worker, upstream-sim and the gateway: the gateway's
added latency at --gateway-concurrency requests in flight, and exhaust -> 429 as a client
sees it. The projections section (bench/projections.py) loads a worker, times the
projector folding its facts into SQLite (and PostgreSQL when deploy/local-postgres
starts) against the pipeline's rate, the lag from a fact to its row under a steady load
(--projections-rate for --projections-seconds), and the dashboard API over one account's
month of hourly data. The soak section (RSS over --soak-seconds, 10 minutes by default)
runs only when named in --sections. --smoke runs tiny sizes of every section, soak
included, to keep the code from rotting (make test does); its figures mean nothing.
Not a test: nothing asserts a time."""
SECTIONS = ("pipeline", "live", "replay", "gateway", "projections", "soak")
#: The sections run when --sections is not given (--smoke: all of them).
DEFAULT_SECTIONS = ("pipeline", "live", "replay", "gateway", "projections")
#: The sections the Markdown report needs (gateway, projections and soak rows are added when they ran).
MARKDOWN_SECTIONS = {"pipeline", "live", "replay"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round (figures mean nothing)")
    parser.add_argument("--events", type=int, help="usage events per pipeline/baseline round (default 50000)")
    parser.add_argument("--rounds", type=int, help="rounds of baseline and pipeline (default 3)")
    parser.add_argument("--exhaustions", type=int, help="stop-service measurements (default 100)")
    parser.add_argument("--load-rate", type=int, help="background usage events/s during them (default 5000)")
    parser.add_argument("--replay-events", type=int, help="events replayed from file and Kafka (default 1000000)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated sections after the baseline: pipeline (with changelog bytes), live "
                             "(stop-service and lookups), replay, gateway (overhead, stop-service through it, cache "
                             "decision), projections (projector rate, fact -> row lag, dashboard API), soak (default "
                             "pipeline,live,replay,gateway,projections; with --smoke all six; the Markdown report needs "
                             "pipeline, live and replay)")
    parser.add_argument("--soak-seconds", type=float, help="soak: duration of the background load (default 600)")
    parser.add_argument("--soak-warmup-seconds", type=float,
                        help="soak: seconds of load that fill the bounded caches and memtables before the RSS the "
                             "end is compared with (default 60; the RSS at the load's start is reported too)")
    parser.add_argument("--soak-accounts", type=int, help="soak: accounts that buy a max plan first (default 20000)")
    parser.add_argument("--soak-rate", type=int,
                        help="soak: background usage events/s (default half the rate at which the worker "
                             "applies a backlog of --soak-probe-events usage events over the soak's own accounts, "
                             "measured first)")
    parser.add_argument("--soak-probe-events", type=int,
                        help="soak: usage events of that backlog (default 200000; it also warms the worker)")
    parser.add_argument("--lookup-idle-wait", type=float, dest="lookup_idle_wait_seconds",
                        help="lookups start once the machine rests (under 0.4 busy cores for 2 s), "
                             "waiting at most this many seconds (default 120)")
    parser.add_argument("--busy-accounts", type=int,
                        help="stop-service at half the pipeline rate: accounts the load goes to (default 100)")
    parser.add_argument("--steady-events", type=int, dest="steady_events_per_account",
                        help="usage events sent to each busy account before that measurement (default 300)")
    parser.add_argument("--gateway-concurrency", type=int,
                        help="gateway: requests in flight for the overhead measure (default 100)")
    parser.add_argument("--gateway-requests", type=int,
                        help="gateway: requests sent direct to upstream-sim and as many through the gateway (default 2000)")
    parser.add_argument("--gateway-exhaustions", type=int,
                        help="gateway: accounts exhausted through the gateway, each timed to its 429 (default 100)")
    parser.add_argument("--projections-accounts", type=int,
                        help="projections: accounts that buy a max plan (default 1000)")
    parser.add_argument("--projections-events", type=int,
                        help="projections: usage events the worker applies before the projector folds (default 20000)")
    parser.add_argument("--projections-rate", type=int,
                        help="projections: usage events/s of the steady load while the lag is measured (default 500)")
    parser.add_argument("--projections-seconds", type=float,
                        help="projections: seconds of that load (default 10)")
    parser.add_argument("--dashboard-requests", type=int, dest="projections_dashboard_requests",
                        help="projections: timed requests per dashboard API endpoint (default 500)")
    parser.add_argument("--changelog-method", choices=("auto", "consume"),
                        help="changelog bytes: the broker's partition sizes, falling back to consuming the records "
                             "(auto, default), or always consume")
    parser.add_argument("--out", default="docs/benchmarks.json", help="JSON report path (default docs/benchmarks.json)")
    parser.add_argument("--markdown", default=None,
                        help="Markdown report path (default docs/benchmarks.md; none with --smoke)")
    parser.set_defaults(func=run)


def config_from(args: argparse.Namespace, bootstrap: str):
    from bench.pipeline import BenchConfig

    config = BenchConfig(bootstrap)
    if args.smoke:
        config = BenchConfig(bootstrap, events=300, accounts=20, rounds=1, exhaustions=3, load_rate=200,
                             lookup_seconds=1.0, lookup_concurrency=4, lookup_idle_wait_seconds=5.0,
                             replay_events=500, busy_accounts=5, steady_events_per_account=20,
                             steady_wait_seconds=60.0, soak_seconds=5.0, soak_warmup_seconds=2.0,
                             soak_probe_events=500, soak_accounts=50, soak_sample_seconds=2.0,
                             gateway_concurrency=8, gateway_requests=80,
                             gateway_exhaustions=4, gateway_parallel=2, gateway_cache_keys=2_000,
                             gateway_decisions=2_000, projections_accounts=20, projections_events=300,
                             projections_rate=100, projections_seconds=2.0, projections_dashboard_days=2,
                             projections_dashboard_requests=20)
    for name in ("events", "rounds", "exhaustions", "load_rate", "replay_events", "soak_seconds",
                 "soak_warmup_seconds", "soak_probe_events", "soak_accounts", "lookup_idle_wait_seconds",
                 "soak_rate", "busy_accounts", "steady_events_per_account", "changelog_method",
                 "gateway_concurrency", "gateway_requests", "gateway_exhaustions", "projections_accounts",
                 "projections_events", "projections_rate", "projections_seconds", "projections_dashboard_requests"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    default_sections = ",".join(SECTIONS if args.smoke else DEFAULT_SECTIONS)
    sections = tuple(name.strip() for name in (args.sections or default_sections).split(",") if name.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"tokenplan bench: unknown section(s) {', '.join(sorted(unknown))}")
    config.sections = sections
    return config


def run(args: argparse.Namespace) -> int:
    from bench.pipeline import run_all
    from bench.report import render_markdown
    from deploy.localrun import local_broker

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with local_broker(bootstrap):
        config = config_from(args, bootstrap)
        report = asyncio.run(run_all(config, lambda line: print(line, file=sys.stderr, flush=True)))
    report["command"] = "tokenplan bench " + " ".join(sys.argv[2:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = args.markdown or (None if args.smoke else "docs/benchmarks.md")
    if markdown and not MARKDOWN_SECTIONS <= set(config.sections):
        print("tokenplan bench: pipeline, live and replay did not all run; no Markdown report written", file=sys.stderr)
    elif markdown:
        Path(markdown).write_text(render_markdown(report))
    print(orjson.dumps({k: report[k] for k in ("baseline", "pipeline", "stop_service", "lookup", "lookup_light", "replay_file",
                                               "replay_kafka", "gateway", "projections", "soak") if k in report}).decode())
    return 0
