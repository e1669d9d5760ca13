"""Our own bugs: raised when an invariant of the core is broken.

A bad *event* is never an exception (it becomes a `Rejection`); this error
means the core itself is wrong and processing must stop before the offset is
committed. Never a bare `assert`, which vanishes under `python -O`.
"""
from __future__ import annotations

__all__ = ["LedgerInvariantError", "invariant"]


class LedgerInvariantError(RuntimeError):
    """An invariant of the ledger core does not hold: stop, do not commit, investigate."""


def invariant(condition: bool, message: str) -> None:
    """Raise `LedgerInvariantError(message)` unless `condition` holds."""
    if not condition:
        raise LedgerInvariantError(message)
