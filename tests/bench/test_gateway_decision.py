"""The gateway bench's in-process decision timing (bench.gateway), without a broker: small
counts, the result's structure only (never its speed), and the /metrics histogram parser."""
from __future__ import annotations

from bench.gateway import decision_timing, parse_histogram
from bench.report import _gateway_rows


def test_decision_timing_reports_percentiles_of_allowed_decisions():
    result = decision_timing(cache_keys=500, decisions=2_000, seed=3)
    assert (result["keys"], result["statuses"], result["decisions"]) == (500, 500, 2_000)
    assert sum(result["reasons"].values()) == 2_000
    assert result["reasons"].get("allowed", 0) > 0
    assert set(result["reasons"]) <= {"allowed", "in_flight_exceeds_remaining"}
    assert result["accounts_with_pending_spend"] > 0
    for name in ("p50_us", "p99_us", "p999_us", "max_us", "mean_us"):
        assert isinstance(result[name], float) and result[name] >= 0
    assert result["p50_us"] <= result["p99_us"] <= result["p999_us"] <= result["max_us"]
    assert result["target_p99_us"] == 50.0 and isinstance(result["within_target"], bool)


METRICS = """# HELP tokenplan_gateway_decision_seconds Quota cache decision time
# TYPE tokenplan_gateway_decision_seconds histogram
tokenplan_gateway_decision_seconds_bucket{le="5e-06"} 10.0
tokenplan_gateway_decision_seconds_bucket{le="1e-05"} 90.0
tokenplan_gateway_decision_seconds_bucket{le="2e-05"} 99.0
tokenplan_gateway_decision_seconds_bucket{le="5e-05"} 100.0
tokenplan_gateway_decision_seconds_bucket{le="+Inf"} 100.0
tokenplan_gateway_decision_seconds_count 100.0
tokenplan_gateway_decision_seconds_sum 0.0008
"""


def test_parse_histogram_gives_the_bucket_bounds_of_p50_and_p99():
    live = parse_histogram(METRICS, "tokenplan_gateway_decision_seconds")
    assert live["count"] == 100 and live["mean_us"] == 8.0
    assert (live["p50_le_us"], live["p99_le_us"]) == (10.0, 20.0)
    assert live["buckets_us"]["+Inf"] == 100
    assert parse_histogram("", "tokenplan_gateway_decision_seconds")["count"] == 0


def test_the_markdown_rows_show_the_decision_target():
    decision = decision_timing(cache_keys=50, decisions=200)
    summary = {"count": 1, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "mean_ms": 1.5}
    side = {**summary, "statuses": {"200": 1}, "requests_per_s": 10.0}
    gateway = {"decision": decision, "live_decision": parse_histogram(METRICS, "tokenplan_gateway_decision_seconds"),
               "overhead": {"request": "chat", "concurrency": 2, "upstream_latency_ms": 20, "requests_per_target": 4,
                            "direct": side, "gateway": side, "added_p50_ms": 0.0, "added_p99_ms": 0.0},
               "stop": {"exhaustions": 1, "parallel": 1, "poll_interval_ms": 5.0, "first_refusal": summary,
                        "first_refusal_reasons": {"exhausted": 1}, "exhausted_refusal": summary, "timeouts": 0}}
    rows = _gateway_rows(gateway)
    assert "p99 <= 50 µs" in rows and "added p50" in rows and "first 429 `exhausted`" in rows
    assert rows.count("\n") == 5 and _gateway_rows(None) == ""
