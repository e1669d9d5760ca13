"""Overspend at exhaustion, measured: concurrent requests against an account's last credits.

Between the request that exhausts an account and the status record saying so, other
requests are in flight. The gateway counts its own in-flight estimates and unconfirmed
spend against the cached remaining credits, so concurrent requests cannot all pass on
a stale "active". Measured here: 40 concurrent requests of ~110k credits each against
~800k remaining credits, with a 300 ms upstream so they all overlap.
"""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openai
import pytest

from deploy.localrun import gateway_process, upstream_sim
from schemas.topics import PLANS, USAGE
from tests.integration.test_gateway_e2e import close_clients, issue, until_key_known  # noqa: F401
from tests.support.events import purchase, usage
from tests.support.kafka_io import produce, wait_lookup

pytestmark = pytest.mark.integration

CONCURRENT = 40
MODEL = "MiMo-V2.5"
PROMPT = "def handler(event):\n    return event\n" * 110  # ~4 KB: ~1,000 input tokens x 100 credits
MAX_TOKENS = 100  # x 200 credits


@pytest.fixture(scope="module")
def slow_stack(kafka_bootstrap, ns, worker, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("overspend")
    sim = upstream_sim(data_dir, "--latency-ms", "300").start()
    sim.wait_ready()
    gateway = gateway_process(kafka_bootstrap, ns, worker.url, sim.url, data_dir).start()
    gateway.wait_ready()
    yield gateway, data_dir
    gateway.stop()
    sim.stop()


async def test_concurrent_requests_overspend_by_at_most_one_request(kafka_bootstrap, ns, worker, slow_stack, capsys):
    gateway, data_dir = slow_stack
    account = f"gw-overspend-{uuid.uuid4().hex[:6]}"
    day = datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    # Peak hours (09:00, 10:00 UTC): 1,952,000 output tokens x 2,100 = 4,099,200,000 of the 4.1e9 lite pool.
    await produce(kafka_bootstrap, ns.topic(PLANS), [purchase(account, day)])
    # Plans and usage are separate topics: usage read before its purchase is refused (no valid package).
    await wait_lookup(worker, account, lambda b: b["status"] == "active")
    await produce(kafka_bootstrap, ns.topic(USAGE), [usage(account, day + timedelta(hours=1), model="MiMo-V2-Pro",
                                                          output=1_952_000)])
    before = await wait_lookup(worker, account, lambda b: b["credits_remaining"] == "800000")
    key, _ = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, key)

    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            await client.chat.completions.create(model=MODEL, max_tokens=MAX_TOKENS,
                                                 messages=[{"role": "user", "content": f"{i}\n{PROMPT}"}])
            outcomes.append("served")
        except openai.RateLimitError:
            outcomes.append("refused")

    try:
        await asyncio.gather(*(one(i) for i in range(CONCURRENT)))
    finally:
        await client.close()
    served = outcomes.count("served")
    after = await wait_lookup(worker, account, lambda b: b["status"] == "exhausted" or b["credits_used"] != before["credits_used"])
    await asyncio.sleep(2.0)  # every served request's usage applied
    after = await wait_lookup(worker, account, lambda b: True)
    spent = Decimal(after["credits_used"]) - Decimal(before["credits_used"])
    overspend = max(Decimal(0), spent - Decimal(before["credits_remaining"]))
    per_request = spent / served if served else Decimal(0)
    with capsys.disabled():
        print(f"\noverspend: {CONCURRENT} concurrent requests, {served} served, {outcomes.count('refused')} refused; "
              f"remaining before {before['credits_remaining']}, spent {spent}, overspend {overspend} credits "
              f"({overspend / per_request if per_request else 0:.2f} requests of ~{per_request:.0f}); "
              f"without the in-flight count all {CONCURRENT} would pass: ~{per_request * CONCURRENT - 800000:.0f} over")
    assert outcomes.count("refused") > 0, "the in-flight count refuses what the remaining credits cannot cover"
    assert served >= 1
    assert overspend <= per_request * 2, "overspend is bounded by about one request, not by the concurrency"
