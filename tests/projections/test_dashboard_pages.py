"""The pages and charts: valid SVG, the API's numbers in data-value, nothing fetched from elsewhere."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from projections.dashboard import charts
from projections.dashboard.app import Dashboard, build_app
from projections.dashboard.formatting import compact, grouped
from projections.dashboard.ops import RateMeter
from projections.dashboard.views import topic_rows
from projections.store import create_schema, open_engine
from tests.projections.dashboard_data import NOW, fill

SVG = "{http://www.w3.org/2000/svg}"
T = datetime(2026, 5, 1, tzinfo=timezone.utc)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return root


def test_stacked_bars_draw_each_model_value_and_a_legend():
    buckets = [T + timedelta(hours=h) for h in range(24)]
    series = {"pro": [Decimal(h) for h in range(24)], "free": [Decimal(0)] * 24, "lite": [Decimal("0.5")] * 24}
    root = parse(charts.stacked_bars(buckets, series, "hour"))
    segments = [r for r in root.iter(SVG + "rect") if r.get("class") == "segment"]
    assert sum(Decimal(r.get("data-value")) for r in segments) == sum(range(24)) + 12
    assert {r.get("data-model") for r in segments} == {"pro", "lite"}  # zero values draw nothing
    assert [g.get("data-model") for g in root.iter(SVG + "g")] == ["pro", "free", "lite"]
    bands = [r for r in root.iter(SVG + "rect") if r.get("class") == "offpeak"]
    assert [band.get("data-hours") for band in bands] == ["8"]  # UTC 16-24, one band


def test_stacked_bars_without_usage_say_so():
    root = parse(charts.stacked_bars([T], {}, "day"))
    assert any("no charged usage" in (t.text or "") for t in root.iter(SVG + "text"))


@pytest.mark.parametrize("limit, used", [("100", "0"), ("100", "85"), ("100", "100"), ("0", "0"), ("10", "12")])
def test_gauge_is_valid_for_any_fill(limit, used):
    remaining = max(Decimal(limit) - Decimal(used), Decimal(0))
    root = parse(charts.credit_gauge(Decimal(limit), Decimal(used), remaining))
    used_bar = next(r for r in root.iter(SVG + "rect") if r.get("class") == "used")
    assert 0 <= float(used_bar.get("width")) <= 740 and used_bar.get("data-used") == used


def test_peak_offpeak_bars_show_the_saving():
    root = parse(charts.peak_offpeak_bars(Decimal(4200), Decimal(4800), Decimal(1200)))
    values = {r.get("data-series"): r.get("data-value") for r in root.iter(SVG + "rect")}
    assert values == {"peak": "4200", "off-peak": "4800", "saved": "1200"}


def test_axis_and_number_formatting():
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 7, 12, 4_100_000_000)] == [1, 0.5, 10, 20, 5_000_000_000]
    assert (compact(4_100_000_000), compact(250_000), compact(0.5)) == ("4.1B", "250k", "0.5")
    assert (grouped(Decimal("3814510052")), grouped(Decimal("1234.500")), grouped(None)) == ("3,814,510,052",
                                                                                               "1,234.5", "–")


def test_rates_need_two_samples_and_lag_needs_kafka():
    clock = iter([0.0, 10.0]).__next__
    meter = RateMeter(clock=clock)
    meter.record({"t": 100})
    assert meter.rate("t") is None
    meter.record({"t": 150})
    assert meter.rate("t") == 5.0
    rows = topic_rows(["t", "u"], {"t": {0: 150, 1: 0}}, {"t": {0: 160, 1: 5}}, {"t": 5.0})
    assert rows[0] | {} == {"topic": "t", "folded": 150, "partitions": 2, "highwater": 165, "lag": 15,
                            "records_per_s": 5.0}
    assert rows[1]["lag"] is None and topic_rows(["t"], {}, None, {})[0]["lag"] is None


@pytest.fixture
async def client():
    engine = open_engine("sqlite://")
    create_schema(engine)
    fill(engine)
    async with TestClient(TestServer(build_app(Dashboard(engine, now=lambda: NOW), sampler=False))) as client:
        yield client


def offline(html: str) -> None:
    """No script, stylesheet, image or font from anywhere: the page works offline."""
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "url(" not in html


async def test_account_page_shows_the_api_numbers(client):
    response = await client.get("/accounts/alice?bucket=hour&from=2026-05-01T02:00:00Z&to=2026-05-03T02:00:00Z")
    html = await response.text()
    assert response.status == 200
    offline(html)
    for svg in re.findall(r"<svg xmlns.*?</svg>", html, flags=re.S):
        parse(svg)
    assert 'id="credits-remaining" data-value="1000">1,000<' in html
    assert 'id="credits-limit" data-value="10000">10,000<' in html
    assert 'id="as-of" data-value="2026-05-02T08:10:00Z"' in html
    assert 'id="credits-saved" data-value="1200"' in html
    assert 'id="total-credits" data-value="9000"' in html
    assert "first_purchase" in html and "6.3 USD" in html  # the payment line
    assert "90 %" in html and "80 %" in html  # the alerts crossed
    assert 'id="run-out-24h" data-value="2026-05-02T17:40' in html


async def test_account_page_per_day_and_operator_page_render(client):
    day = await client.get("/accounts/alice?bucket=day")
    assert day.status == 200 and 'class="on" href="/accounts/alice?bucket=day"' in await day.text()
    operator = await client.get("/")
    html = await operator.text()
    offline(html)
    assert 'id="accounts-exhausted" data-value="1"' in html and 'href="/accounts/bob"' in html
    assert 'id="dead-usage_before_package" data-value="2"' in html
    bad = await client.get("/accounts/alice?bucket=minute")
    assert bad.status == 400 and "bucket" in await bad.text()


async def test_the_search_box_goes_to_the_account(client):
    response = await client.get("/accounts?id=bob", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/accounts/bob"
