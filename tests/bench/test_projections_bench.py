"""The projections bench (bench.projections) without a broker: the dashboard measure at
small sizes, the /metrics summary and the Markdown rows; structure only, never speed."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from sqlalchemy import func, select

from bench.gateway import parse_histogram
from bench.projections import (DASHBOARD_ACCOUNT, dashboard_latency, from_dashboard_bench, metrics_summary,
                               month_of_usage, summary_ms)
from bench.report import _projections_rows
from projections.metrics import ProjectorMetrics
from projections.projector import SOURCE_TOPICS
from projections.store import open_engine
from projections.tables import package_history, usage_hourly


def test_month_of_usage_is_one_row_per_hour_and_model(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'month.db'}")
    filled = month_of_usage(engine, datetime(2026, 6, 15, 10, 20, tzinfo=timezone.utc), days=2, models=3)
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(usage_hourly)
                                  .where(usage_hourly.c.account_id == DASHBOARD_ACCOUNT)).scalar()
        models = connection.execute(select(func.count(func.distinct(usage_hourly.c.model)))).scalar()
        packages = connection.execute(select(func.count()).select_from(package_history)).scalar()
    engine.dispose()
    assert rows == filled["hourly_rows"] == 2 * 24 * 3 and models == 3 and packages == 1
    assert filled["usage_facts"] == rows


def test_dashboard_latency_times_both_endpoints(tmp_path):
    result = asyncio.run(dashboard_latency(f"sqlite:///{tmp_path / 'dash.db'}", requests=5, days=2, models=2))
    assert result["hourly_rows"] == 96 and result["requests_per_endpoint"] == 5
    assert result["usage"]["rows"] == 96  # the whole span of the package, hour by hour
    for name in ("usage", "forecast"):
        timing = result[name]
        assert timing["count"] == 5 and timing["bytes"] > 0
        assert 0 < timing["p50_ms"] <= timing["p99_ms"] <= timing["max_ms"]
    assert "dashboard/bench.py" in result["provider"]


def test_metrics_summary_reads_the_projector_exposition():
    metrics = ProjectorMetrics(SOURCE_TOPICS, (80, 90, 100))
    metrics.register_scrape(lambda: [("balance-changed", 0, 3), ("quota-status", 1, 2)], lambda: 1)
    metrics.batch_committed({"balance-changed": 10, "quota-status": 2}, 1, [("quota.threshold", 80)], 0.004)
    metrics.batch_committed({"balance-changed": 5}, 0, [], 0.02)
    summary = metrics_summary(metrics.exposition().decode(), parse_histogram)
    assert (summary["facts_applied"], summary["batches"], summary["duplicates"]) == (17, 2, 1)
    assert (summary["alerts"], summary["webhook_failures"], summary["lag_at_end"]) == (1, 1, 5)
    assert summary["batch_seconds"]["count"] == 2 and summary["batch_seconds"]["p99_le_ms"] == 25.0


def _section(pipeline: float | None) -> dict:
    timing = {**summary_ms([1.0, 2.0, 3.0]), "bytes": 100}
    run = {"records": 1200, "batches": 2, "batch_max": 2000, "events_per_s": 4000.0, "fold_events_per_s": 5000.0}
    throughput = {"sqlite": run, "postgresql": {"skipped": "no PostgreSQL here"}, "pipeline_events_per_s": pipeline}
    if pipeline:
        throughput["sqlite_to_pipeline"] = round(4000.0 / pipeline, 3)
    return {"load": {"accounts": 20, "usage_facts": 1000},
            "throughput": throughput,
            "lag": {"rate_target": 100, "seconds": 2.0, "usage_events_sent": 200, "usage_facts_folded": 200,
                    "all_facts": summary_ms([5.0, 9.0]), "usage_facts": summary_ms([5.0])},
            "dashboard": {"provider": "bench.projections (x)", "days": 30, "models": 4,
                          "usage": {**timing, "rows": 2880}, "forecast": timing}}


def test_the_dashboards_own_measure_is_reported_in_this_sections_keys():
    from projections.dashboard import bench as provided

    raw = asyncio.run(provided.measure(None, hours=24, requests=3))
    result = from_dashboard_bench(raw)
    assert result["provider"] == "projections.dashboard.bench.measure" and result["hours"] == 24
    for name in ("usage", "forecast"):
        assert result[name]["count"] == 3 and result[name]["p50_ms"] <= result[name]["p99_ms"]
    assert "`projections.dashboard.bench.measure`" in _projections_rows({**_section(None), "dashboard": result})


def test_the_markdown_rows():
    rows = _projections_rows(_section(2000.0))
    assert "projector into SQLite" in rows and "**2.00x** the pipeline's 2,000 events/s" in rows
    assert "PostgreSQL (deploy/local-postgres) | skipped: no PostgreSQL here" in rows
    assert "fact -> row" in rows and "`GET /api/accounts/{id}/forecast`" in rows and "2,880 rows" in rows
    assert rows.count("\n") == 5
    assert "the pipeline section did not run" in _projections_rows(_section(None))
    assert _projections_rows(None) == ""
