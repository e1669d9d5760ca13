"""ledger.py: the replay fold over many accounts, global refresh broadcast, result structure."""
from streams.ledger import Fold
from tests.ledger.conftest import purchase, refresh, usage, utc


def test_result_structure_and_rejections(catalog):
    ledger = Fold(catalog)
    for data in (purchase("alice"), usage("alice", miss=10_000_000, event_id="u1"),
                 usage("alice", miss=10_000_000, event_id="u1"), usage("carol", event_id="u2"),
                 b"not json", usage("alice", model="nope", event_id="u3")):
        ledger.feed(data)
    result = ledger.result(utc(2026, 5, 10))
    assert result["as_of"] == "2026-05-10T00:00:00Z"
    assert result["accounts"]["alice"] == {
        "status": "active", "tier": "lite", "period": "monthly", "credits_limit": "4100000000",
        "credits_used": "3000000000", "credits_remaining": "1100000000",
        "valid_from": "2026-05-01T00:00:00Z", "valid_until": "2026-06-01T00:00:00Z"}
    assert result["accounts"]["carol"]["status"] == "none"
    assert [(r["event_id"], r["reason"]) for r in result["rejected"]] == [
        ("u2", "usage_outside_package"), (None, "invalid_json"), ("u3", "unknown_model")]
    assert ledger.duplicates_count == 1


def test_global_refresh_reaches_every_account_and_later_packages(catalog):
    ledger = Fold(catalog)
    ledger.feed(purchase("alice", "2026-05-10T00:00:00Z"))
    ledger.feed(usage("alice", "2026-05-20T00:00:00Z", miss=100))
    ledger.feed(refresh("2026-05-27T00:00:00+08:00", event_id="beijing"))
    ledger.feed(purchase("bob", "2026-05-20T00:00:00Z"))  # opened after the refresh was seen
    ledger.feed(usage("bob", "2026-05-21T00:00:00Z", miss=100))  # before T: must not count
    ledger.feed(usage("bob", "2026-05-28T00:00:00Z", miss=1))
    ledger.feed(refresh("2026-05-27T00:00:00+08:00", event_id="beijing"))  # duplicate
    accounts = ledger.result(utc(2026, 5, 29))["accounts"]
    assert accounts["alice"]["credits_used"] == "0"
    assert accounts["bob"]["credits_used"] == "300"
    assert ledger.global_refreshes == [utc(2026, 5, 26, 16)] and ledger.duplicates_count == 1


def test_expired_and_none(catalog):
    ledger = Fold(catalog)
    ledger.feed(purchase("alice", "2026-05-01T00:00:00Z"))
    assert ledger.result(utc(2026, 6, 1))["accounts"]["alice"]["status"] == "expired"
    assert ledger.result(utc(2026, 4, 1))["accounts"]["alice"]["status"] == "none"
