"""The forecast rule: pace in peak-equivalent credits, walked hour by hour with 0.8x off-peak."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from projections.forecast import HourUsage, forecast, run_out

DAY = datetime(2026, 5, 10, tzinfo=timezone.utc)


def hours(start: datetime, count: int, credits: str, offpeak: bool = False) -> list[HourUsage]:
    value = Decimal(credits)
    return [HourUsage(start + timedelta(hours=i), value, value if offpeak else Decimal(0)) for i in range(count)]


def test_peak_pace_runs_out_linearly_within_peak_hours():
    at, outlasts = run_out(DAY, Decimal(100), Decimal(10), None)  # 00:00, peak until 16:00
    assert at == DAY + timedelta(hours=10) and not outlasts


def test_off_peak_hours_cost_0_8_of_the_pace():
    # From 12:00: 4 peak hours cost 40, then 60 left at 8/h off-peak = 7.5 h -> 23:30.
    at, _ = run_out(DAY + timedelta(hours=12), Decimal(100), Decimal(10), None)
    assert at == DAY + timedelta(hours=23, minutes=30)


def test_pace_counts_off_peak_credits_as_peak_equivalent():
    # 24 hours of history: 16 peak hours at 10 credits, 8 off-peak hours at 8 credits (the same work).
    rows = hours(DAY, 16, "10") + hours(DAY + timedelta(hours=16), 8, "8", offpeak=True)
    now = DAY + timedelta(hours=24)
    result = forecast(rows, Decimal(1000), now, valid_from=DAY - timedelta(days=10))
    day = result.pace(24)
    assert day.credits == Decimal(224) and day.credits_offpeak == Decimal(64)
    assert day.peak_equivalent_credits == Decimal(240)
    assert day.window_start == DAY and day.covered_hours == Decimal(24) and day.peak_equivalent_per_hour == 10
    # From 00:00: 16 peak hours cost 160 a day and 8 off-peak hours 64: 224 a day, so 1000 lasts
    # 4 days (896), then 104 more: 10.4 peak hours.
    assert day.run_out_at == now + timedelta(days=4, hours=10, minutes=24)
    # Half an hour later the window's first hour counts half.
    later = forecast(rows, Decimal(1000), now + timedelta(minutes=30), valid_from=DAY - timedelta(days=10)).pace(24)
    assert later.credits == Decimal(219)


def test_a_young_package_measures_its_pace_over_its_own_age():
    start = DAY + timedelta(hours=8)
    rows = hours(start, 2, "50")
    result = forecast(rows, Decimal(100), start + timedelta(hours=2), valid_from=start)
    assert result.pace(24).covered_hours == Decimal(2) and result.pace(24).peak_equivalent_per_hour == 50
    assert result.pace(24).run_out_at == start + timedelta(hours=4)
    assert result.pace(168).run_out_at == start + timedelta(hours=4)


def test_stops_at_valid_until_and_no_usage_means_no_run_out():
    now = DAY + timedelta(hours=1)
    result = forecast(hours(DAY, 1, "1"), Decimal(10_000), now, valid_until=now + timedelta(hours=5),
                      valid_from=DAY)
    assert result.pace(24).run_out_at is None and result.pace(24).outlasts_package
    idle = forecast([], Decimal(10), now, valid_from=DAY)
    assert idle.pace(24).run_out_at is None and idle.pace(24).peak_equivalent_per_hour == 0


def test_nothing_left_runs_out_now():
    assert run_out(DAY, Decimal(0), Decimal(5), None) == (DAY, False)


def test_account_forecast_reads_the_current_package_and_its_hours(database_url):
    from projections.fold import Fold
    from projections.queries import account_forecast
    from projections.store import create_schema, open_engine
    from tests.projections.builders import T0, balance, package, record, reset_offsets, usage_object

    reset_offsets()
    engine = open_engine(database_url)
    create_schema(engine)
    pkg = package(T0, limit="1000")
    charges = [record("balance-changed", balance("open", T0, "0", cause_type="plan.purchased", pkg=pkg, amount="5"))]
    charges += [record("balance-changed", balance(f"u{i}", T0 + timedelta(hours=i), str(10 * (i + 1)), "10", pkg=pkg,
                                                  usage=usage_object())) for i in range(10)]  # 02:00..11:00, peak
    with engine.begin() as connection:
        Fold().apply(connection, charges)
    with engine.connect() as connection:
        result = account_forecast(connection, "alice", T0 + timedelta(hours=10))
        assert account_forecast(connection, "nobody", T0) is None
    engine.dispose()
    day = result.pace(24)
    # 100 credits over the package's 10 hours: 10/h; 900 left at 12:00: 40 to 16:00 (860), then
    # 224 a day (8 off-peak hours at 8, 16 peak at 10): May 4 16:00 188, May 5 00:00 124, +12.4 h.
    assert day.covered_hours == 10 and day.peak_equivalent_per_hour == 10 and result.credits_remaining == 900
    assert day.run_out_at == datetime(2026, 5, 5, 12, 24, tzinfo=timezone.utc)
