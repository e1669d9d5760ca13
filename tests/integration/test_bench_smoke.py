"""`tokenplan bench --smoke`: every section (soak included) runs and reports figures (their values mean nothing here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deploy.localrun import REPO

pytestmark = pytest.mark.integration


def test_bench_smoke_reports_every_section(kafka_bootstrap, tmp_path):
    out = tmp_path / "bench.json"
    markdown = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "--smoke", "--out", str(out),
                             "--markdown", str(markdown)], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["baseline"]["events_per_s"] > 0
    assert report["pipeline"]["rounds"][0]["complete"] is True
    assert report["pipeline"]["ratio_to_baseline"] > 0
    for stop in report["stop_service"].values():
        assert stop["lookup"]["count"] + stop["timeouts"] >= 1
    assert report["lookup"]["local"]["count"] > 0 and report["lookup"]["routed"]["count"] > 0
    # Lookups start once the machine rests, and say where their CPU went.
    assert report["lookup"]["machine_rest"]["waited_s"] >= 0
    assert report["lookup"]["cpu_ms_per_request"]["client"] > 0
    assert len(report["lookup"]["cpu_ms_per_request"]["workers"]) == 2
    assert "CPU per request: client" in markdown.read_text()
    assert report["replay_file"]["events"] == report["replay_kafka"]["events"] > 0
    # Changelog bytes of the usage phase, from the broker's partition sizes (or the fallback).
    changelog = report["pipeline"]["rounds"][0]["changelog"]
    assert changelog["usage_events"] > 0 and changelog["records"] > 0 and changelog["bytes"] > 0
    topics = report["pipeline"]["changelog_topics"]  # whatever tables the worker has, found by name
    assert "accounts-changelog" in topics and all(topic.endswith("-changelog") for topic in topics)
    assert report["pipeline"]["changelog_bytes_per_usage_event"] > 0
    assert report["pipeline"]["changelog_method"]
    # Stop-service at half the pipeline rate, on busy accounts brought to steady state first.
    steady = [stop["steady_state"] for stop in report["stop_service"].values() if "steady_state" in stop]
    assert len(steady) == 1 and steady[0]["events"] > 0
    # A few seconds of soak: RSS samples from start to end, applied rate, kept up or not.
    soak = report["soak"]
    assert soak["events_sent"] > 0 and soak["events_applied"] > 0 and len(soak["samples"]) >= 2
    for key in ("rss_start_mib", "rss_warm_mib", "rss_end_mib", "rss_max_mib", "rss_end_to_start", "rss_end_to_warm",
                "rss_within_tolerance", "applied_events_per_s", "kept_up"):
        assert key in soak
    assert soak["warmup_seconds"] >= 2.0 or soak["warmup_seconds"] == soak["samples"][-1]["t_s"]
    # The gateway section: the cache decision in process, the overhead, stop-service through the gateway.
    gateway = report["gateway"]
    assert gateway["decision"]["decisions"] > 0 and gateway["decision"]["p99_us"] > 0
    assert gateway["overhead"]["direct"]["count"] > 0 and gateway["overhead"]["gateway"]["count"] > 0
    assert gateway["stop"]["exhausted_refusal"]["count"] + gateway["stop"]["timeouts"] >= 1
    assert gateway["stop"]["served_polls"] == 0, "no request is served after the gateway refused the account"
    # The projections section: the projector's rate (SQLite; PostgreSQL or the reason it was skipped)
    # against the pipeline's, the fact -> row lag with the live projector's /metrics, the dashboard API.
    projections = report["projections"]
    assert projections["load"]["complete"] is True
    sqlite = projections["throughput"]["sqlite"]
    assert sqlite["complete"] is True and sqlite["records"] == sqlite["expected"] > 0 and sqlite["events_per_s"] > 0
    postgresql = projections["throughput"]["postgresql"]
    assert "skipped" in postgresql or postgresql["records"] == sqlite["records"]
    assert projections["throughput"]["pipeline_events_per_s"] == report["pipeline"]["events_per_s"]
    assert projections["throughput"]["sqlite_to_pipeline"] > 0
    lag = projections["lag"]
    assert lag["complete"] is True and lag["usage_facts_folded"] == lag["usage_events_sent"] > 0
    assert lag["all_facts"]["count"] >= lag["usage_facts"]["count"] > 0 and lag["all_facts"]["p99_ms"] is not None
    assert lag["metrics"]["batches"] > 0 and lag["metrics"]["facts_applied"] >= lag["usage_facts_folded"]
    dashboard = projections["dashboard"]
    for name in ("usage", "forecast"):
        assert dashboard[name]["count"] > 0 and dashboard[name]["p99_ms"] > 0
    text = markdown.read_text()
    assert "| pipeline: worker" in text and "| changelog bytes" in text and "| soak:" in text
    assert "| projector into SQLite" in text and "| projector lag, fact -> row" in text and "| dashboard API" in text
