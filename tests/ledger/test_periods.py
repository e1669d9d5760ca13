"""periods.py: calendar-month arithmetic with day clamping."""
from streams.ledger.periods import add_months, contains, period_end
from tests.ledger.conftest import utc


def test_month_end_clamps():
    assert add_months(utc(2026, 1, 31, 10), 1) == utc(2026, 2, 28, 10)
    assert add_months(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
    assert add_months(utc(2026, 3, 31), 1) == utc(2026, 4, 30)
    assert add_months(utc(2026, 12, 15), 1) == utc(2027, 1, 15)
    assert add_months(utc(2028, 2, 29), 12) == utc(2029, 2, 28)


def test_renewal_chain_is_anchored_not_drifting():
    anchor = utc(2026, 1, 31)
    assert [period_end(anchor, 1, i) for i in range(3)] == [utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30)]


def test_validity_is_half_open():
    assert contains(utc(2026, 5, 1), utc(2026, 6, 1), utc(2026, 5, 1))
    assert not contains(utc(2026, 5, 1), utc(2026, 6, 1), utc(2026, 6, 1))
