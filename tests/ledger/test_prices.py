"""prices.py: the 16 list prices, annual relation, discounts and their exclusivity, upgrades."""
from decimal import Decimal

import pytest

from streams.ledger.memory import InMemoryEventMemory
from streams.ledger.decisions import quote
from streams.ledger.prices import DiscountFlags, purchase_price, round_money, upgrade_price
from tests.ledger.conftest import purchase, run, upgrade, usage, utc

PRICES = {
    ("lite", "monthly", "USD"): "6", ("standard", "monthly", "USD"): "16",
    ("pro", "monthly", "USD"): "50", ("max", "monthly", "USD"): "100",
    ("lite", "annual", "USD"): "63.36", ("standard", "annual", "USD"): "168.96",
    ("pro", "annual", "USD"): "528.00", ("max", "annual", "USD"): "1056.00",
    ("lite", "monthly", "CNY"): "39", ("standard", "monthly", "CNY"): "99",
    ("pro", "monthly", "CNY"): "329", ("max", "monthly", "CNY"): "659",
    ("lite", "annual", "CNY"): "411.84", ("standard", "annual", "CNY"): "1045.44",
    ("pro", "annual", "CNY"): "3474.24", ("max", "annual", "CNY"): "6959.04",
}
NEVER = DiscountFlags(had_package=True, first_purchase_discount_used=True, auto_renew_activated=True)
NEW = DiscountFlags(False, False, False)


@pytest.fixture
def version(catalog):
    return catalog.version_at(utc(2026, 5, 1))


@pytest.mark.parametrize("key,price", sorted(PRICES.items()))
def test_all_16_list_prices(version, key, price):
    tier, period, currency = key
    assert version.list_price(tier, period, currency) == Decimal(price)
    quoted = purchase_price(version, NEVER, tier, period, currency, auto_renew=False)
    assert quoted.amount == Decimal(price).quantize(Decimal("0.01")) and quoted.discount is None


@pytest.mark.parametrize("tier", ["lite", "standard", "pro", "max"])
@pytest.mark.parametrize("currency", ["USD", "CNY"])
def test_annual_is_12_months_at_088(version, tier, currency):
    monthly = version.list_price(tier, "monthly", currency)
    assert version.list_price(tier, "annual", currency) == round_money(monthly * 12 * Decimal("0.88"))
    assert version.credits_limit(tier, "annual") == version.credits_limit(tier, "monthly") * 12


def test_pools(version):
    assert [version.credits_limit(t, "monthly") for t in ("lite", "standard", "pro", "max")] == [
        Decimal(4_100_000_000), Decimal(11_000_000_000), Decimal(38_000_000_000), Decimal(82_000_000_000)]


def test_first_purchase_discount(version):
    quoted = purchase_price(version, NEW, "pro", "monthly", "USD", auto_renew=False)
    assert (quoted.amount, quoted.discount) == (Decimal("44.00"), "first_purchase")


def test_auto_renew_new_user_wins_over_first_purchase(version):
    # both apply: 0.77 beats 0.88 (mutually exclusive, the larger discount wins)
    quoted = purchase_price(version, NEW, "pro", "monthly", "USD", auto_renew=True)
    assert (quoted.amount, quoted.discount) == (Decimal("38.50"), "auto_renew_new")


def test_auto_renew_existing_user(version):
    flags = DiscountFlags(had_package=True, first_purchase_discount_used=True, auto_renew_activated=False)
    quoted = purchase_price(version, flags, "lite", "monthly", "CNY", auto_renew=True)
    assert (quoted.amount, quoted.discount) == (Decimal("27.30"), "auto_renew_existing")


def test_money_rounds_half_up_to_cents(version):
    # 39 x 0.77 = 30.03; 6 x 0.77 = 4.62; 659 x 0.88 = 579.92
    assert purchase_price(version, NEW, "lite", "monthly", "CNY", True).amount == Decimal("30.03")
    assert purchase_price(version, NEW, "max", "monthly", "CNY", False).amount == Decimal("579.92")
    assert round_money(Decimal("0.125")) == Decimal("0.13")
    assert round_money(Decimal("0.135")) == Decimal("0.14")


def test_annual_is_never_discounted(version):
    quoted = purchase_price(version, NEW, "pro", "annual", "USD", auto_renew=True)
    assert (quoted.amount, quoted.discount) == (Decimal("528.00"), None)


def test_upgrade_price_difference_formula():
    # Lite used 3B of 4.1B: 50 - (1.1/4.1) x 6 = 48.39
    assert upgrade_price(Decimal(50), Decimal(6), 1_100_000_000 * 10**6, 4_100_000_000 * 10**6) == Decimal("48.39")
    assert upgrade_price(Decimal(50), Decimal(6), 0, 4_100_000_000 * 10**6) == Decimal("50.00")
    # a third of 10.00 is 3.333..: 20 - 3.33 = 16.67 (exact fraction, half-up)
    assert upgrade_price(Decimal(20), Decimal(10), 1, 3) == Decimal("16.67")
    # never negative (refunds are not supported)
    assert upgrade_price(Decimal(16), Decimal("63.36"), 1, 1) == Decimal("0.00")


def test_quote_purchase_then_refused_while_valid(catalog):
    state, _ = run(catalog, purchase(at="2026-05-01T00:00:00Z"))
    assert quote(None, "purchase", "pro", "monthly", "USD", False, utc(2026, 5, 1), catalog) == {
        "allowed": True, "amount": "44.00", "currency": "USD", "discount": "first_purchase"}
    refused = quote(state, "purchase", "pro", "monthly", "USD", False, utc(2026, 5, 5), catalog)
    assert refused["allowed"] is False and refused["reason"] == "package_already_valid"
    after = quote(state, "purchase", "pro", "monthly", "USD", True, utc(2026, 6, 2), catalog)
    assert after == {"allowed": True, "amount": "35.00", "currency": "USD", "discount": "auto_renew_existing"}
    again = quote(state, "purchase", "pro", "monthly", "USD", False, utc(2026, 6, 2), catalog)
    assert again["discount"] is None and again["amount"] == "50.00"


def test_quote_upgrade(catalog):
    memory = InMemoryEventMemory()
    state, _ = run(catalog, purchase(at="2026-05-01T00:00:00Z"),
                   usage(at="2026-05-02T10:00:00Z", miss=10_000_000), memory=memory)
    answer = quote(state, "upgrade", "pro", "monthly", "USD", False, utc(2026, 5, 3), catalog, memory)
    assert answer == {"allowed": True, "amount": "48.39", "currency": "USD", "discount": None}
    cny = quote(state, "upgrade", "pro", "monthly", "CNY", False, utc(2026, 5, 3), catalog, memory)
    # 329 - (1.1/4.1) x 39 = 329 - 10.4634.. = 318.54
    assert cny["amount"] == "318.54"


@pytest.mark.parametrize("tier,reason", [("lite", "downgrade_not_allowed"),
                                         ("standard", "downgrade_not_allowed")])
def test_quote_upgrade_refusals(catalog, tier, reason):
    state, _ = run(catalog, purchase(at="2026-05-01T00:00:00Z", tier="standard"))
    assert quote(state, "upgrade", tier, "monthly", "USD", False, utc(2026, 5, 3), catalog)["reason"] == reason


def test_quote_upgrade_from_max_and_without_package(catalog):
    state, _ = run(catalog, purchase(at="2026-05-01T00:00:00Z", tier="max"))
    assert quote(state, "upgrade", "max", "annual", "USD", False, utc(2026, 5, 3), catalog)["reason"] == "upgrade_from_max"
    assert quote(None, "upgrade", "pro", "monthly", "USD", False, utc(2026, 5, 3), catalog)["reason"] == "no_valid_package"
    assert quote(state, "upgrade", "pro", "monthly", "USD", False, utc(2026, 7, 3), catalog)["reason"] == "no_valid_package"


def test_exhausted_package_has_zero_remaining_for_upgrade(catalog):
    memory = InMemoryEventMemory()
    state, _ = run(catalog, purchase(at="2026-05-01T00:00:00Z"),
                   usage(at="2026-05-02T10:00:00Z", out=10_000_000), memory=memory)  # 6B > 4.1B
    answer = quote(state, "upgrade", "standard", "monthly", "USD", False, utc(2026, 5, 3), catalog, memory)
    assert answer["amount"] == "16.00"


def test_upgrade_event_records_price(catalog):
    state, results = run(catalog, purchase(at="2026-05-01T00:00:00Z"),
                         usage(at="2026-05-02T10:00:00Z", miss=10_000_000),
                         upgrade(at="2026-05-03T00:00:00Z", tier="pro"))
    fact = results[-1].facts[-1]
    assert fact.amount == Decimal("48.39") and fact.discount is None
