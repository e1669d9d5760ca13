"""The quota cache's decisions and the spend book, in process (no broker)."""
from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from gateway.quota.cache import REFUSALS, QuotaCache
from gateway.quota.entries import KeyEntry, StatusEntry, parse_status
from gateway.quota.spend import SpendBook

NOW_MS = 1_000_000.0


def status(state: str = "active", remaining: str | None = "1000", allowed: bool | None = None,
           source: tuple[str, int, int] | None = None) -> StatusEntry:
    return StatusEntry(state, state == "active" if allowed is None else allowed,
                       Decimal(remaining) if remaining is not None else None, "2026-12-02T10:00:00Z", source)


def cache(policy: str = "fail-closed", **statuses: StatusEntry) -> QuotaCache:
    book = SpendBook(unconfirmed_ttl_s=30)
    quota = QuotaCache(stale_after_ms=3000, stale_policy=policy, spend=book)
    quota.caught_up_at_ms = NOW_MS - 10
    quota.put_key("h-a", KeyEntry("key_a", "acct-a", "active"))
    for account, entry in statuses.items():
        quota.put_status(account.replace("_", "-"), entry, "p.usage")
    return quota


def test_an_active_account_is_allowed_with_its_freshness():
    decision = cache(acct_a=status()).decide("h-a", Decimal(10), NOW_MS, 0.0)
    assert (decision.allowed, decision.reason, decision.cache_age_ms) == (True, "allowed", 10)
    assert decision.status_as_of == "2026-12-02T10:00:00Z"


@pytest.mark.parametrize(("entry", "reason"), [
    (status("exhausted", "0"), "exhausted"),
    (status("active", "5", allowed=False), "exhausted"),
    (status("expired", None), "package_expired"),
    (status("none", None), "no_package"),
])
def test_the_status_refuses_with_a_named_reason(entry, reason):
    decision = cache(acct_a=entry).decide("h-a", Decimal(1), NOW_MS, 0.0)
    assert (decision.allowed, decision.reason) == (False, reason)
    assert reason in REFUSALS


def test_unknown_revoked_and_suspended_keys():
    quota = cache(acct_a=status())
    assert quota.decide("nope", Decimal(1), NOW_MS, 0.0).reason == "unknown_key"
    quota.put_key("h-a", KeyEntry("key_a", "acct-a", "suspended"))
    assert quota.decide("h-a", Decimal(1), NOW_MS, 0.0).reason == "suspended_key"
    quota.put_key("h-a", KeyEntry("key_a", "acct-a", "revoked"))
    assert quota.decide("h-a", Decimal(1), NOW_MS, 0.0).reason == "revoked_key"


def test_a_reissued_hash_for_a_key_id_drops_the_old_hash():
    quota = cache()
    quota.put_key("h-b", KeyEntry("key_a", "acct-a", "active"))
    assert quota.decide("h-a", Decimal(1), NOW_MS, 0.0).reason == "unknown_key"


def test_an_account_without_status_is_a_miss_for_the_lookup():
    decision = cache().decide("h-a", Decimal(1), NOW_MS, 0.0)
    assert (decision.allowed, decision.reason, decision.key.account_id) == (False, "status_miss", "acct-a")


def test_stale_cache_fails_closed_by_default_and_open_only_for_accounts_last_seen_active():
    stale_ms = NOW_MS + 5000
    assert cache(acct_a=status()).decide("h-a", Decimal(1), stale_ms, 0.0).reason == "quota_unavailable"
    opened = cache("fail-open", acct_a=status()).decide("h-a", Decimal(1), stale_ms, 0.0)
    assert (opened.allowed, opened.stale) == (True, True)
    assert not cache("fail-open", acct_a=status("exhausted", "0")).decide("h-a", Decimal(1), stale_ms, 0.0).allowed
    assert not cache("fail-open").decide("h-a", Decimal(1), stale_ms, 0.0).allowed  # never seen: refused
    low = cache("fail-open", acct_a=status(remaining="100"))
    low.spend.reserve("acct-a", "r1", Decimal(90))
    assert low.decide("h-a", Decimal(20), stale_ms, 0.0).reason == "in_flight_exceeds_remaining"
    never = cache(acct_a=status())
    never.caught_up_at_ms = None
    assert never.decide("h-a", Decimal(1), NOW_MS, 0.0).reason == "quota_unavailable"


def test_in_flight_reservations_refuse_what_would_exceed_the_remaining_credits():
    quota = cache(acct_a=status(remaining="1000"))
    assert quota.decide("h-a", Decimal(5000), NOW_MS, 0.0).allowed, "a lone request is never refused on its estimate"
    quota.spend.reserve("acct-a", "r1", Decimal(600))
    assert quota.decide("h-a", Decimal(300), NOW_MS, 0.0).allowed
    quota.spend.reserve("acct-a", "r2", Decimal(300))
    assert quota.decide("h-a", Decimal(200), NOW_MS, 0.0).reason == "in_flight_exceeds_remaining"
    quota.spend.settle("acct-a", "r1", (3, 41), Decimal(100), now=0.0)  # spent 100, unconfirmed
    quota.spend.settle("acct-a", "r2", (3, 42), Decimal(100), now=0.0)
    assert quota.spend.pending("acct-a", 0.0) == Decimal(200)
    assert quota.decide("h-a", Decimal(700), NOW_MS, 0.0).allowed
    assert quota.decide("h-a", Decimal(900), NOW_MS, 0.0).reason == "in_flight_exceeds_remaining"


def test_a_status_showing_the_usage_record_confirms_the_spend():
    quota = cache(acct_a=status())
    quota.spend.reserve("acct-a", "r1", Decimal(50))
    quota.spend.settle("acct-a", "r1", (3, 41), Decimal(40), now=0.0)
    quota.put_status("acct-a", status(source=("p.usage", 3, 40)), "p.usage")
    assert quota.spend.pending("acct-a", 0.0) == Decimal(40), "offset 41 is not shown yet"
    quota.put_status("acct-a", status(source=("p.plans", 3, 99)), "p.usage")
    assert quota.spend.pending("acct-a", 0.0) == Decimal(40), "a plans position says nothing about usage"
    quota.put_status("acct-a", status(source=("p.usage", 3, 41)), "p.usage")
    assert quota.spend.pending("acct-a", 0.0) == 0 and quota.spend.accounts() == 0


def test_unconfirmed_spend_ends_by_its_ttl_so_the_book_stays_bounded():
    book = SpendBook(unconfirmed_ttl_s=30)
    book.reserve("a", "r", Decimal(5))
    book.settle("a", "r", None, Decimal(5), now=100.0)  # spooled: no position, only the TTL ends it
    assert book.pending("a", 129.0) == 5
    assert book.pending("a", 130.0) == 0 and book.accounts() == 0


def test_parse_status_reads_the_status_contract():
    body = {"account_id": "a", "status": "active", "allowed": True, "tier": "lite", "period": "monthly",
            "credits_limit": "10", "credits_used": "2.5", "credits_remaining": "7.5", "valid_from": None,
            "valid_until": None, "as_of": {"computed_at": "2026-12-02T10:00:00Z", "event_time": None, "log": None,
                                           "source": {"topic": "p.usage", "partition": 1, "offset": 7}}}
    entry = parse_status(orjson.dumps(body))
    assert (entry.remaining, entry.source, entry.allowed) == (Decimal("7.5"), ("p.usage", 1, 7), True)


def test_a_policy_suspension_refuses_only_that_key():
    quota = cache(acct_a=status())
    quota.put_key("h-b", KeyEntry("key_b", "acct-a", "active"))
    quota.put_key_status("key_a", "suspended")
    assert quota.decide("h-a", Decimal(1), NOW_MS, 0.0).reason == "suspended_key"
    assert quota.decide("h-b", Decimal(1), NOW_MS, 0.0).allowed, "the account's other keys keep working"
    quota.put_key_status("key_a", "active")
    assert quota.decide("h-a", Decimal(1), NOW_MS, 0.0).allowed
