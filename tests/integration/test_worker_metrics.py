"""GET /metrics of a real worker: what it counted equals what was sent, and it is caught up."""
from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import events as ev
from tests.support.kafka_io import produce, recent_utc_day, wait_for, wait_lookup

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the worker's exposition, parsed as Prometheus reads it."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5.0) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def lags(samples: dict) -> dict[str, float]:
    return {dict(labels)["partition"]: value for (name, labels), value in samples.items()
            if name == "tokenplan_worker_consumer_lag"}


async def test_metrics_count_what_was_sent_and_show_no_lag(kafka_bootstrap, namespace, start_worker):
    worker = start_worker()
    account = "metrics-acct"
    await produce(kafka_bootstrap, namespace.topic("plans"), [ev.purchase(account, recent_utc_day())])
    await wait_lookup(worker, account, lambda body: body["status"] == "active")
    now = datetime.now(timezone.utc)
    usage = [ev.usage(account, now - timedelta(seconds=3 - n), miss=1000) for n in range(3)]
    # The bad event first: on the same usage partition, so the last usage applied means it was too.
    sent = await produce(kafka_bootstrap, namespace.topic("usage"), [b"not json", *usage], key=account.encode())
    last = sent[-1].offset
    await wait_lookup(worker, account, lambda body: (body["as_of"]["source"] or {}).get("offset") == last)

    samples = scrape(worker.url)
    applied = {topic: samples[("tokenplan_worker_events_applied_total", (("topic", topic),))]
               for topic in ("usage", "plans", "policy")}
    assert applied == {"usage": 4, "plans": 1, "policy": 0}
    rejections = {dict(labels)["reason"]: value for (name, labels), value in samples.items()
                  if name == "tokenplan_worker_rejections_total"}
    assert rejections == {"invalid_json": 1}
    assert samples[("tokenplan_worker_state", (("state", "running"),))] == 1
    assert samples[("tokenplan_worker_units_total", ())] >= 2  # the purchase, then the usage (maybe split)
    assert samples[("tokenplan_worker_apply_seconds_count", ())] == samples[("tokenplan_worker_units_total", ())]
    # Lag is read from the consumer's high-water marks, which follow its fetches: poll briefly.
    caught_up = await wait_for(lambda: (found := lags(scrape(worker.url))) and len(found) == 8
                               and not any(found.values()) and found, timeout_s=15.0, what="lag 0 on all 8 partitions")
    assert sorted(caught_up, key=int) == [str(partition) for partition in range(8)]
