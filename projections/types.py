"""Column types that keep credits, money and instants exact on every database.

Why: SQLite has no exact decimal (its NUMERIC affinity turns 0.1 into a float), and its
datetimes come back naive. The ledger counts integer micro-credits, so on SQLite a
decimal is stored as an INTEGER of millionths (SUM stays exact); on PostgreSQL it is
NUMERIC(38, 6). Either way Python sees a `Decimal` in canonical form, and `func.sum`
of such a column is converted back the same way (its type follows the column's).
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["ExactDecimal", "UtcDateTime", "canonical", "to_micro", "MICRO"]

#: Fraction digits kept: the ledger's unit is the micro-credit; cents fit too.
SCALE = 6
MICRO = Decimal(10) ** SCALE
#: NUMERIC precision on PostgreSQL: 32 integer digits is far above any pool or fleet sum.
PRECISION = 38


def canonical(value: Decimal) -> Decimal:
    """The one spelling of a value: no exponent, no trailing fraction zeros (3000, 1.6)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def to_micro(value: Decimal | str | int) -> int:
    """Millionths as an int; refuses what a micro-unit cannot hold rather than round it."""
    scaled = Decimal(value) * MICRO
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {SCALE} fraction digits")
    return int(scaled)


class ExactDecimal(TypeDecorator):
    """Decimal credits or money: INTEGER micro-units on SQLite, NUMERIC(38, 6) elsewhere."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect: Dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_micro(value)
        to_micro(value)  # the same exactness check on every database
        return Decimal(value)

    def process_result_value(self, value, dialect: Dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return canonical(Decimal(int(value)) / MICRO)
        return canonical(Decimal(value))


class UtcDateTime(TypeDecorator):
    """An aware UTC instant: naive UTC text on SQLite, timestamptz on PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        return dialect.type_descriptor(DateTime(timezone=dialect.name != "sqlite"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("instants must be timezone-aware")
        utc = value.astimezone(timezone.utc)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
