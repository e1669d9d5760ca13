"""`tokenplan bench`: measure the worker on the real broker and write the report."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson

HELP = "benchmark: raw-client baseline, pipeline, stop-service latency, lookups, replay (writes a report)"
DESCRIPTION = """\
Runs every section of streams/benchmarks/pipeline.py against the broker at
KAFKA_BOOTSTRAP_SERVERS (started with deploy/local-kafka when none answers, and stopped
afterwards), in fresh topic namespaces, and writes the figures as JSON (--out) and as
Markdown (--markdown). --smoke runs tiny sizes to keep the code from rotting (make test
does); its figures mean nothing. Not a test: nothing asserts a time."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round (figures mean nothing)")
    parser.add_argument("--events", type=int, help="usage events per pipeline/baseline round (default 50000)")
    parser.add_argument("--rounds", type=int, help="rounds of baseline and pipeline (default 3)")
    parser.add_argument("--exhaustions", type=int, help="stop-service measurements (default 100)")
    parser.add_argument("--load-rate", type=int, help="background usage events/s during them (default 5000)")
    parser.add_argument("--replay-events", type=int, help="events replayed from file and Kafka (default 1000000)")
    parser.add_argument("--sections", default="pipeline,live,replay",
                        help="comma-separated sections after the baseline: pipeline, live (stop-service and "
                             "lookups), replay (default all; the Markdown report needs all)")
    parser.add_argument("--out", default="docs/benchmarks.json", help="JSON report path (default docs/benchmarks.json)")
    parser.add_argument("--markdown", default=None,
                        help="Markdown report path (default docs/benchmarks.md; none with --smoke)")
    parser.set_defaults(func=run)


def config_from(args: argparse.Namespace, bootstrap: str):
    from streams.benchmarks.pipeline import BenchConfig

    config = BenchConfig(bootstrap)
    if args.smoke:
        config = BenchConfig(bootstrap, events=300, accounts=20, rounds=1, exhaustions=3, load_rate=200,
                             lookup_seconds=1.0, lookup_concurrency=4, replay_events=500)
    for name in ("events", "rounds", "exhaustions", "load_rate", "replay_events"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    sections = tuple(name.strip() for name in args.sections.split(",") if name.strip())
    unknown = set(sections) - {"pipeline", "live", "replay"}
    if unknown:
        raise SystemExit(f"tokenplan bench: unknown section(s) {', '.join(sorted(unknown))}")
    config.sections = sections
    return config


def run(args: argparse.Namespace) -> int:
    from streams.benchmarks.pipeline import run_all
    from streams.benchmarks.report import render_markdown
    from streams.localrun import local_broker

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with local_broker(bootstrap):
        config = config_from(args, bootstrap)
        report = asyncio.run(run_all(config, lambda line: print(line, file=sys.stderr, flush=True)))
    report["command"] = "tokenplan bench " + " ".join(sys.argv[2:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = args.markdown or (None if args.smoke else "docs/benchmarks.md")
    if markdown and set(config.sections) != {"pipeline", "live", "replay"}:
        print("tokenplan bench: not every section ran; no Markdown report written", file=sys.stderr)
    elif markdown:
        Path(markdown).write_text(render_markdown(report))
    print(orjson.dumps({k: report[k] for k in ("baseline", "pipeline", "stop_service", "lookup", "lookup_light", "replay_file",
                                               "replay_kafka") if k in report}).decode())
    return 0
