"""`tokenplan gateway-traffic` end to end: real SDKs -> gateway -> upstream-sim, usage -> worker.

The traffic's core function runs in-process against a real worker, upstream-sim and
gateway: the usage the ledger receives must be the SDKs' (coding-tool clients, both
protocols), and the --exhaust account must end exhausted and refused with 429.
"""
from __future__ import annotations

import orjson
import pytest
from rich.console import Console

from deploy.localrun import gateway_process, http_get, upstream_sim
from gateway.config import GatewaySettings
from gateway.traffic import TOOLS, TrafficConfig, run_traffic
from schemas.topics import USAGE
from tests.support.kafka_io import consume_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap, ns, worker, tmp_path_factory):
    """(gateway, data_dir): upstream-sim and the gateway against the module's worker."""
    data_dir = tmp_path_factory.mktemp("traffic")
    sim = upstream_sim(data_dir).start()
    sim.wait_ready()
    process = gateway_process(kafka_bootstrap, ns, worker.url, sim.url, data_dir).start()
    process.wait_ready()
    yield process, data_dir
    process.stop()
    sim.stop()


async def test_sdk_traffic_is_metered_and_the_exhausted_account_is_refused(kafka_bootstrap, ns, worker, gateway):
    process, data_dir = gateway
    settings = GatewaySettings(bootstrap_servers=kafka_bootstrap, topic_prefix=ns.topic_prefix,
                               key_secret_file=data_dir / "key-secret")
    config = TrafficConfig(gateway_url=process.url, worker_url=worker.url, accounts=2, rate=4, seconds=45,
                           exhaust=True, stop_when_exhausted=True, exhaust_pause_s=0.1, report_every_s=2)

    report = await run_traffic(config, settings, Console(stderr=True, highlight=False, soft_wrap=True))

    exhausted = next(a for a in report.accounts if a.exhausting)
    assert report.exhausted_account == exhausted.account_id, f"not exhausted in time: {report.tally}"
    assert report.exhausted_status == 429 and "credits are used up" in report.exhausted_error
    assert report.exhausted_error.split(":")[0] in ("openai.RateLimitError", "anthropic.RateLimitError")
    assert report.tally.refused_by_account[exhausted.account_id]["exhausted"] >= 1
    status, body = http_get(f"{worker.url}/accounts/{exhausted.account_id}/quota")
    assert status == 200 and body["status"] == "exhausted" and body["allowed"] is False

    ours = {a.account_id for a in report.accounts}
    events = [orjson.loads(v) for _k, v in await consume_all(kafka_bootstrap, ns.topic(USAGE), idle_s=0.5)]
    events = [e for e in events if e["account_id"] in ours]
    assert {e["protocol"] for e in events} == {"openai", "anthropic"}
    assert {e["client"] for e in events} == {tool.user_agent for tool in TOOLS}
    assert any(e["input_cache_hit_tokens"] > 0 for e in events), "the repeated system prompt is reported cached"
    assert {e["model"] for e in events if e["account_id"] == exhausted.account_id} == {"MiMo-V2-Pro"}
    assert sum(report.tally.served.values()) == len({e["event_id"] for e in events})
    for account in report.accounts:
        assert all(e["key_id"] == account.key_id for e in events if e["account_id"] == account.account_id)
