"""The bench's dashboard measurement runs end to end on a small fill (the real one is a month)."""
from __future__ import annotations

from projections.dashboard.bench import MODELS, api_latency


def test_api_latency_fills_the_account_and_times_every_endpoint():
    result = api_latency(hours=48, requests=3)
    assert result["rows"] == {"usage_hourly": 48 * len(MODELS), "balance_timeline": 48 * len(MODELS)}
    assert set(result["endpoints"]) == {"usage_month_hourly", "usage_month_daily", "forecast", "account",
                                        "account_page_daily"}
    for figures in result["endpoints"].values():
        assert figures["requests"] == 3 and 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert result["api_p99_ms"] == max(result["endpoints"][name]["p99_ms"]
                                       for name in ("usage_month_hourly", "usage_month_daily", "forecast", "account"))
