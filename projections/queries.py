"""Reads over the tables that more than one page needs (the dashboard builds on these)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from projections.forecast import WINDOWS_HOURS, Forecast, HourUsage, forecast
from projections.tables import package_history, usage_hourly

__all__ = ["current_package", "hourly_credits", "account_forecast"]


def current_package(connection: Connection, account_id: str, now: datetime) -> dict | None:
    """The package period valid at `now` (its latest balance), or None."""
    table = package_history.c
    row = connection.execute(select(package_history).where(
        table.account_id == account_id, table.valid_from <= now, table.valid_until > now,
    ).order_by(table.valid_from.desc()).limit(1)).mappings().first()
    return None if row is None else dict(row)


def hourly_credits(connection: Connection, account_id: str, since: datetime) -> list[HourUsage]:
    """The account's credits per hour (all models) from `since`'s hour on."""
    table = usage_hourly.c
    query = (select(table.hour_start, func.sum(table.credits), func.sum(table.credits_offpeak))
             .where(table.account_id == account_id, table.hour_start >= since - timedelta(hours=1))
             .group_by(table.hour_start).order_by(table.hour_start))
    return [HourUsage(hour, credits, offpeak) for hour, credits, offpeak in connection.execute(query)]


def account_forecast(connection: Connection, account_id: str, now: datetime) -> Forecast | None:
    """The forecast for the account's current package (None without one)."""
    package = current_package(connection, account_id, now)
    if package is None:
        return None
    rows = hourly_credits(connection, account_id, now - timedelta(hours=max(WINDOWS_HOURS)))
    return forecast(rows, package["credits_remaining"], now, valid_until=package["valid_until"],
                    valid_from=package["valid_from"])
