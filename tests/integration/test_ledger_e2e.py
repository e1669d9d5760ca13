"""The streaming ledger end to end on the real broker: one worker, many accounts.

Every account's lookup is compared with the core's replay (`Fold`) of the same
events; the out-topics are checked for what the gateways and dashboards rely on.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import orjson
import pytest

from streams.ledger.partitioning import key_partition
from streams.audit.compare import VIEW_FIELDS
from streams.config import Settings
from streams.ledger import Fold, load_catalog
from tests.support import events as ev
from tests.support.kafka_io import (consume_json, instant, lookup, produce, recent_utc_day,
                                    wait_lookup)

pytestmark = pytest.mark.integration



def accounts_on_every_partition(prefix: str, per_partition: int = 2, partitions: int = 8) -> list[str]:
    """Account ids chosen so each partition holds `per_partition` of them (murmur2, as Kafka)."""
    chosen: dict[int, list[str]] = {partition: [] for partition in range(partitions)}
    index = 0
    while any(len(ids) < per_partition for ids in chosen.values()):
        account_id = f"{prefix}-{index}"
        ids = chosen[key_partition(account_id.encode(), partitions)]
        if len(ids) < per_partition:
            ids.append(account_id)
        index += 1
    return [account_id for ids in chosen.values() for account_id in ids]


async def buy(kafka_bootstrap, ns, worker, plans: list[dict]) -> None:
    """Publish purchases and wait until applied: usage and plans arrive on two topics with no
    order between them, so a test that needs 'package first' waits for it."""
    await produce(kafka_bootstrap, ns.topic("plans"), plans)
    for event in plans:
        await wait_lookup(worker, event["account_id"], lambda body: body["status"] == "active")


def replay(events: list[dict], as_of: str) -> dict:
    """The core's answer for the same events in the same order (what `tokenplan replay` prints)."""
    ledger = Fold(load_catalog(), Settings.from_env().limits)
    for event in events:
        ledger.feed(orjson.dumps(event))
    from schemas.events import parse_instant
    return ledger.result(parse_instant(as_of))


async def test_product_document_example_and_offpeak_boundaries_match_replay(kafka_bootstrap, ns, worker):
    day = recent_utc_day()
    plans = [ev.purchase("doc-example", day), ev.purchase("offpeak", day)]
    usage = [
        # The product document: Lite, 10M cache-miss MiMo-V2.5-Pro tokens = 3,000,000,000 credits.
        ev.usage("doc-example", day + timedelta(hours=10), model="MiMo-V2.5-Pro", miss=10_000_000),
        # 15:59:59 UTC is peak (x1), 16:00:00 UTC is off-peak (x0.8), 00:00:00 UTC is peak again.
        ev.usage("offpeak", day + timedelta(hours=15, minutes=59, seconds=59), miss=1000),
        ev.usage("offpeak", day + timedelta(hours=16), miss=1000),
        ev.usage("offpeak", day + timedelta(days=1), miss=1000),
    ]
    await buy(kafka_bootstrap, ns, worker, plans)
    await produce(kafka_bootstrap, ns.topic("usage"), usage)
    as_of = instant(day + timedelta(days=1, hours=1))
    await wait_lookup(worker, "offpeak", lambda body: body["credits_used"] == "280000", as_of=as_of)
    await wait_lookup(worker, "doc-example", lambda body: body["credits_used"] == "3000000000", as_of=as_of)

    expected = replay(plans + usage, as_of)["accounts"]
    for account_id in ("doc-example", "offpeak"):
        status, body = lookup(worker, account_id, as_of)
        assert status == 200
        assert {name: body[name] for name in VIEW_FIELDS} == expected[account_id]
    assert expected["doc-example"]["credits_remaining"] == "1100000000"
    # 100,000 + 80,000 + 100,000 credits: only 16:00:00 is off-peak.
    assert expected["offpeak"]["credits_used"] == "280000"

    changes = [change for change in await consume_json(kafka_bootstrap, ns, "balance-changed")
               if change["account_id"] == "offpeak" and change["cause_type"] == "usage"]
    assert sorted(change["credits_charged"] for change in changes) == ["100000", "100000", "80000"]
    assert len({change["event_id"] for change in changes}) == 3


async def test_duplicate_event_id_is_charged_once(kafka_bootstrap, ns, worker):
    day = recent_utc_day()
    await buy(kafka_bootstrap, ns, worker, [ev.purchase("dup", day)])
    retry = ev.usage("dup", day + timedelta(hours=3), miss=500, event_id="gateway-retry-1")
    await produce(kafka_bootstrap, ns.topic("usage"), [retry, retry, ev.usage("dup", day + timedelta(hours=4), miss=1)])
    body = await wait_lookup(worker, "dup", lambda body: body["credits_used"] == "50100")
    assert body["credits_remaining"] == "4099949900"
    causes = [change["cause_event_id"] for change in await consume_json(kafka_bootstrap, ns, "balance-changed")
              if change["account_id"] == "dup"]
    assert causes.count("gateway-retry-1") == 1


async def test_exhaustion_is_published_once_and_an_upgrade_restores_service(kafka_bootstrap, ns, worker):
    day = recent_utc_day()
    await buy(kafka_bootstrap, ns, worker, [ev.purchase("heavy", day)])
    # 4.1B pool: 2 x 3B crosses into exhaustion at the second event, the third is in-flight usage.
    burst = [ev.usage("heavy", day + timedelta(hours=h), model="mimo-v2.5-pro", miss=10_000_000) for h in (1, 2, 3)]
    await produce(kafka_bootstrap, ns.topic("usage"), burst)
    body = await wait_lookup(worker, "heavy", lambda body: body["status"] == "exhausted")
    assert body["allowed"] is False and body["credits_remaining"] == "0"
    assert body["credits_used"] == "9000000000"

    await produce(kafka_bootstrap, ns.topic("plans"), [ev.upgrade("heavy", day + timedelta(hours=5), "pro")])
    body = await wait_lookup(worker, "heavy", lambda body: body["tier"] == "pro")
    assert body["allowed"] is True and body["credits_used"] == "0" and body["credits_limit"] == "38000000000"

    blocks = [fact for fact in await consume_json(kafka_bootstrap, ns, "quota-exhausted") if fact["account_id"] == "heavy"]
    assert [fact["type"] for fact in blocks] == ["quota.exhausted", "quota.restored"]

    statuses = [status for status in await consume_json(kafka_bootstrap, ns, "quota-status") if status["account_id"] == "heavy"]
    assert [(s["status"], s["allowed"]) for s in statuses][-2:] == [("exhausted", False), ("active", True)]


async def test_global_refresh_reaches_accounts_on_every_partition(kafka_bootstrap, ns, worker):
    day = recent_utc_day()
    accounts = accounts_on_every_partition("refresh")
    await buy(kafka_bootstrap, ns, worker, [ev.purchase(account_id, day) for account_id in accounts])
    # All usage of the other tests of this module is at day + 1h or later, after this refresh.
    await produce(kafka_bootstrap, ns.topic("usage"), [ev.usage(a, day + timedelta(seconds=30), miss=10) for a in accounts])
    for account_id in accounts:
        await wait_lookup(worker, account_id, lambda body: body["credits_used"] == "1000")
    # Published once, unkeyed, on one partition; the sequencer broadcasts it.
    refresh = ev.refresh(day + timedelta(minutes=1))
    await produce(kafka_bootstrap, ns.topic("plans"), [refresh], key=None)
    partitions = set()
    for account_id in accounts:
        body = await wait_lookup(worker, account_id, lambda body: body["credits_used"] == "0")
        partitions.add(body["as_of"]["log"]["partition"])
    assert len(partitions) == 8, "the accounts should span every partition"
    refreshed = [change for change in await consume_json(kafka_bootstrap, ns, "balance-changed")
                 if change["cause_event_id"] == refresh["event_id"]]
    # Every account of the namespace (other tests' too) got it exactly once.
    counts = Counter(change["account_id"] for change in refreshed)
    assert set(accounts) <= set(counts) and set(counts.values()) == {1}


async def test_malformed_values_land_in_the_dead_letter_topic_and_the_worker_goes_on(kafka_bootstrap, ns, worker):
    day = recent_utc_day()
    await buy(kafka_bootstrap, ns, worker, [ev.purchase("after-junk", day)])
    junk = [b"\xff\xfe not utf-8", b"{not json", b'{"type": "usage"}', orjson.dumps(ev.usage("after-junk", day, model="gpt-9"))]
    await produce(kafka_bootstrap, ns.topic("usage"), junk, key=b"after-junk")
    await produce(kafka_bootstrap, ns.topic("usage"), [ev.usage("after-junk", day + timedelta(hours=1), miss=7)])
    await wait_lookup(worker, "after-junk", lambda body: body["credits_used"] == "700")

    letters = [letter for letter in await consume_json(kafka_bootstrap, ns, "rejected")
               if letter["source"] and letter["source"]["topic"] == ns.topic("usage")]
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == sorted(["invalid_json", "invalid_json", "invalid_event", "unknown_model"])
    assert all(letter["source"]["offset"] >= 0 and letter["detail"] for letter in letters)
    binary = [letter for letter in letters if letter["payload_encoding"] == "base64"]
    assert len(binary) == 1


async def test_unknown_account_is_none_and_not_allowed(worker):
    status, body = lookup(worker, "never-seen")
    assert status == 200
    assert body["status"] == "none" and body["allowed"] is False


async def test_a_package_that_ends_with_no_event_becomes_expired(kafka_bootstrap, ns, worker):
    """Expiry is time passing: the clock tick publishes it, no event for the account needed."""
    from datetime import datetime, timezone

    from streams.ledger.periods import add_months

    now = datetime.now(timezone.utc).replace(microsecond=0)
    # A monthly package bought one calendar month before now + 6 s: it ends in ~6 s.
    ends = now + timedelta(seconds=6)
    bought = add_months(ends, -1)
    if add_months(bought, 1) != ends:
        pytest.skip("month-end day: one month back and forth does not return to the same day")
    await buy(kafka_bootstrap, ns, worker, [ev.purchase("short-lived", bought)])
    body = await wait_lookup(worker, "short-lived", lambda body: body["status"] == "expired")
    assert body["allowed"] is False

    async def expired_on_status_topic():
        statuses = [s for s in await consume_json(kafka_bootstrap, ns, "quota-status", idle_s=0.5)
                    if s["account_id"] == "short-lived"]
        return statuses and statuses[-1]["status"] == "expired"

    deadline = asyncio.get_running_loop().time() + 20
    while not await expired_on_status_topic():
        assert asyncio.get_running_loop().time() < deadline, "no expired record on quota-status"
        await asyncio.sleep(0.5)
