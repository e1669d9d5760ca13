"""views.py: status active/exhausted/expired/none, times in Z, remaining never negative."""
from streams.ledger import allowed, account_view
from streams.ledger.views import empty_view
from tests.ledger.conftest import purchase, run, usage, utc


def test_statuses(catalog):
    state, _ = run(catalog, purchase(at="2026-05-01T08:00:00+08:00"), usage(at="2026-05-02T00:00:00Z", out=10_000_000))
    assert account_view(None, utc(2026, 5, 2)) == empty_view("none")
    exhausted = account_view(state, utc(2026, 5, 2))
    assert exhausted["status"] == "exhausted" and exhausted["credits_remaining"] == "0"
    assert exhausted["credits_used"] == "6000000000" and not allowed(exhausted)
    assert exhausted["valid_from"] == "2026-05-01T00:00:00Z"
    assert account_view(state, utc(2026, 6, 1))["status"] == "expired"
    assert account_view(state, utc(2026, 4, 30, 23, 59, 59))["status"] == "none"


def test_active_allows(catalog):
    state, _ = run(catalog, purchase())
    view = account_view(state, utc(2026, 5, 1))
    assert view["status"] == "active" and allowed(view) and view["credits_used"] == "0"
