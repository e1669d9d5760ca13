"""How steadily a key's requests arrive: a bounded per-key record of recent arrival instants.

A cron job or a `while True: call(); sleep(1)` loop sends requests at a near-constant
interval; a person at a coding tool, and the agent loop it drives, is bursty (a run of
quick tool-call turns, then minutes of reading and typing). The coefficient of
variation of the inter-arrival times separates the two without looking at content.
It is one signal among others (see `classify`): alone it never decides a violation.
"""
from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["CADENCE_KEYS_MAX", "CADENCE_MIN_REQUESTS", "CADENCE_WINDOW", "MACHINE_CV_MAX",
           "CadenceSummary", "CadenceTracker", "summarize"]

#: Keys tracked at once; beyond it the least recently seen key is forgotten. Bounds the
#: memory (about 100 000 x 20 floats, a few tens of MB) whatever the number of keys seen.
CADENCE_KEYS_MAX = 100_000

#: Arrival instants kept per key: enough for a stable CV, short enough to follow a change
#: of behaviour (a key that stops looping stops looking machine-like within 20 requests).
CADENCE_WINDOW = 20

#: Arrivals needed before a cadence may be called machine-like: with fewer intervals a
#: low CV happens by chance (two or three evenly spaced agent turns), and a wrong
#: suspension costs more than a missed one.
CADENCE_MIN_REQUESTS = 10

#: The CV below which a rhythm is machine-like. A scheduler with jitter or a sleep loop
#: stays well under 0.1; interactive and agentic traffic is bursty, with a CV near or above 1.
MACHINE_CV_MAX = 0.15


@dataclass(frozen=True)
class CadenceSummary:
    """A key's recent rhythm: arrivals in the window, mean interval, its CV, the verdict."""

    requests: int
    mean_interval_s: float | None
    cv: float | None
    machine_like: bool


def summarize(instants: list[float]) -> CadenceSummary:
    """The summary of arrival instants (seconds, any order; sorted so clock jitter cannot go negative)."""
    ordered = sorted(instants)
    intervals = [later - earlier for earlier, later in zip(ordered, ordered[1:])]
    if not intervals:
        return CadenceSummary(requests=len(ordered), mean_interval_s=None, cv=None, machine_like=False)
    mean = statistics.fmean(intervals)
    # Simultaneous arrivals (mean 0) have no rhythm to speak of: no CV, not machine-like.
    cv = statistics.pstdev(intervals) / mean if mean > 0 else None
    machine_like = len(ordered) >= CADENCE_MIN_REQUESTS and cv is not None and cv < MACHINE_CV_MAX
    return CadenceSummary(requests=len(ordered), mean_interval_s=mean, cv=cv, machine_like=machine_like)


class CadenceTracker:
    """The last `CADENCE_WINDOW` arrivals of up to `CADENCE_KEYS_MAX` keys, least recently seen evicted."""

    def __init__(self, keys_max: int = CADENCE_KEYS_MAX, window: int = CADENCE_WINDOW) -> None:
        self._keys_max = keys_max
        self._window = window
        self._arrivals: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._arrivals)

    def observe(self, key_id: str, at_s: float) -> CadenceSummary:
        """Record an arrival of `key_id` at `at_s` (seconds, e.g. time.monotonic()) and summarize the key."""
        arrivals = self._arrivals.get(key_id)
        if arrivals is None:
            arrivals = self._arrivals[key_id] = deque(maxlen=self._window)
            if len(self._arrivals) > self._keys_max:
                self._arrivals.popitem(last=False)
        else:
            self._arrivals.move_to_end(key_id)
        arrivals.append(at_s)
        return summarize(list(arrivals))
