"""`tokenplan bench --smoke`: every section runs and reports figures (their values mean nothing here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streams.localrun import REPO

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
    assert report["replay_file"]["events"] == report["replay_kafka"]["events"] > 0
    assert "| pipeline: worker" in markdown.read_text()
