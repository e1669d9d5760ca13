"""The dashboard in a real browser against a live stack: a worker, the projector, `tokenplan dashboard`.

Headless Chromium from Debian's package (deploy/system-packages installs it), driven by
Playwright pointed at /usr/bin/chromium. The shown figures (ids and data-value on the
page) must equal the JSON API and the worker's lookup; screenshots of both pages are
saved under .data/test-artifacts/ for people to look at.
"""
from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from deploy.localrun import REPO, ServiceProcess, http_get
from projections.projector import Projector
from projections.settings import ProjectorSettings
from projections.store import open_engine
from projections.tables import balance_timeline, dead_letter_reasons, quota_status
from tests.support.events import purchase, usage
from tests.support.kafka_io import lookup, produce, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / ".data" / "test-artifacts"
A, B, C = "dash-a", "dash-b", "dash-c"
PRO, FLASH, TTS = "mimo-v2.5-pro", "mimo-v2.5", "MiMo-V2.5-TTS"


def chromium_or_skip():
    """Playwright's sync API, with Debian's chromium installed (by deploy/system-packages if missing)."""
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(REPO / "deploy" / "system-packages")], check=False)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and deploy/system-packages could not install Debian's chromium "
                    "(no apt, network or root?)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return playwright.sync_playwright


def _events(start: datetime) -> tuple[list[dict], list[dict]]:
    """Purchases, and usage over the last day and a half: A on three models (one free) at peak
    and off-peak hours, B enough to exhaust a lite pool, C without a package (a dead letter)."""
    plans = [purchase(A, start), purchase(B, start)]
    hours = [start + timedelta(hours=h, minutes=7) for h in range(0, 36, 3)]
    uses = [usage(A, at, model=PRO if i % 2 else FLASH, hit=2000 * i, miss=40_000 + i, output=900 + i)
            for i, at in enumerate(hours)]
    uses += [usage(A, hours[4], model=TTS, output=700)]
    uses += [usage(B, start + timedelta(hours=1 + i), model=PRO, miss=10_000_000) for i in range(2)]
    uses += [usage(C, start + timedelta(hours=2))]
    return plans, uses


async def _feed(bootstrap: str, ns, worker) -> None:
    start = (datetime.now(timezone.utc) - timedelta(hours=36)).replace(minute=0, second=0, microsecond=0)
    plans, uses = _events(start)
    await produce(bootstrap, ns.topic("plans"), plans)
    for account in (A, B):
        await wait_for(lambda a=account: lookup(worker, a)[1].get("status") == "active", what=f"{account} active")
    sent = await produce(bootstrap, ns.topic("usage"), uses)
    last = {event["account_id"]: meta.offset for event, meta in zip(uses, sent)}
    for account in (A, B):
        def applied(a=account) -> bool:
            source = (lookup(worker, a)[1].get("as_of") or {}).get("source") or {}
            return source.get("topic") == ns.topic("usage") and source.get("offset") == last[a]
        await wait_for(applied, timeout_s=60, what=f"the worker to apply {account}'s last usage")


async def _project(bootstrap: str, ns, worker, url: str) -> None:
    """The projector in process until its tables say what the lookup says (then stopped)."""
    settings = ProjectorSettings(bootstrap=bootstrap, app_id=ns.app_id, topic_prefix=ns.topic_prefix,
                                 projections_url=url, poll_ms=200, progress_s=5.0, session_timeout_ms=6000)
    engine = open_engine(url)

    def caught_up() -> bool:
        try:
            with engine.connect() as connection:
                balances = {row.account_id: row.credits_remaining for row in connection.execute(
                    select(balance_timeline.c.account_id, balance_timeline.c.credits_remaining)
                    .order_by(balance_timeline.c.fact_offset))}
                statuses = dict(connection.execute(select(quota_status.c.account_id, quota_status.c.status)).all())
                dead = connection.execute(select(func.count()).select_from(dead_letter_reasons)).scalar()
        except Exception:  # tables not created yet
            return False
        truth = {account: lookup(worker, account)[1] for account in (A, B)}
        return (dead > 0 and statuses.get(B) == "exhausted"
                and all(balances.get(a) == Decimal(truth[a]["credits_remaining"]) for a in (A, B)))

    stop = asyncio.Event()
    task = asyncio.create_task(Projector(settings, engine).run(stop))
    try:
        await wait_for(lambda: task.done() or caught_up(), timeout_s=60, what="the projector to catch up")
        if task.done():
            task.result()
    finally:
        stop.set()
        await task
        engine.dispose()


def _numbers(page, ids: list[str]) -> dict[str, str | None]:
    return {ident: page.get_attribute(f"#{ident}", "data-value") for ident in ids}


def test_both_pages_show_the_api_and_lookup_numbers(kafka_bootstrap, ns, worker, tmp_path):
    sync_playwright = chromium_or_skip()
    url = f"sqlite:///{tmp_path / 'projections.db'}"
    asyncio.run(_feed(kafka_bootstrap, ns, worker))
    asyncio.run(_project(kafka_bootstrap, ns, worker, url))
    dashboard = ServiceProcess(["dashboard"], tmp_path, env={
        "TOKENPLAN_PROJECTIONS_URL": url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOKENPLAN_TOPIC_PREFIX": ns.topic_prefix, "TOKENPLAN_APP_ID": ns.app_id, "TOKENPLAN_WORKER_URL": worker.url})
    dashboard.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        dashboard.wait_ready(timeout_s=30)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                _check_account_page(page, dashboard.url, worker)
                _check_operator_page(page, dashboard.url, ns)
            finally:
                browser.close()
    finally:
        dashboard.stop()


def _check_account_page(page, base: str, worker) -> None:
    page.goto(f"{base}/accounts/{A}?bucket=day")
    page.screenshot(path=str(ARTIFACTS / "dashboard-account.png"), full_page=True)
    shown = _numbers(page, ["status", "credits-limit", "credits-used", "credits-remaining", "total-credits",
                            "total-output_tokens", "credits-saved", "as-of"])
    _status, truth = lookup(worker, A)
    _code, api = http_get(f"{base}/api/accounts/{A}")
    assert shown["status"] == truth["status"] == api["status"]["status"] == "active"
    for name in ("credits_limit", "credits_used", "credits_remaining"):
        assert shown[name.replace("_", "-")] == truth[name] == api["credits"][name], name
    assert shown["as-of"] == api["status"]["as_of"]["computed_at"]
    _code, rows = http_get(f"{base}/api/accounts/{A}/usage?bucket=day")
    assert Decimal(shown["total-credits"]) == sum(Decimal(r["credits"]) for r in rows["rows"]) == Decimal(
        truth["credits_used"])
    assert int(shown["total-output_tokens"]) == sum(r["output_tokens"] for r in rows["rows"])
    assert any(r["model"] == TTS and r["credits"] == "0" for r in rows["rows"])  # the free model is a row
    assert Decimal(shown["credits-saved"]) == sum(Decimal(r["credits_saved"]) for r in rows["rows"]) > 0
    # Text for people: the same figure with thousands separators.
    assert page.inner_text("#credits-remaining") == f"{Decimal(truth['credits_remaining']):,f}"
    _code, forecast = http_get(f"{base}/api/accounts/{A}/forecast")
    assert forecast["credits_remaining"] == truth["credits_remaining"]
    assert page.locator("svg.stacked rect.segment").count() > 0


def _check_operator_page(page, base: str, ns) -> None:
    topic = ns.topic("balance-changed")
    _code, fleet = http_get(f"{base}/api/fleet")
    page.goto(f"{base}/")
    page.screenshot(path=str(ARTIFACTS / "dashboard-operator.png"), full_page=True)
    assert page.get_attribute("#accounts-active", "data-value") == str(fleet["accounts_by_status"]["active"])
    assert page.get_attribute("#accounts-exhausted", "data-value") == "1" == str(
        fleet["accounts_by_status"]["exhausted"])
    assert fleet["recently_exhausted"][0]["account_id"] == B
    assert page.locator(f'a[href="/accounts/{B}"]').count() >= 1
    for row in fleet["dead_letters_by_reason"]:
        assert page.get_attribute(f"#dead-{row['reason']}", "data-value") == str(row["count"])
    folded = {row["topic"]: row for row in fleet["topics"]["topics"]}[topic]
    assert page.get_attribute(f"[id='folded-{topic}']", "data-value") == str(folded["folded"])
    assert folded["lag"] == 0, fleet["topics"]["kafka"]  # the projector caught up before it stopped
    assert page.get_attribute(f"[id='lag-{topic}']", "data-value") == "0"
