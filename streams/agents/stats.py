"""Per-process counters of what the agents consumed, shown by GET /health."""
from __future__ import annotations

from collections import Counter

_consumed: Counter[str] = Counter()


def count(topic: str, events: int = 1) -> None:
    _consumed[topic] += events


def snapshot() -> dict[str, int]:
    return dict(_consumed)
