"""The local quota cache: "may key K spend now?" from memory, no I/O on the request path.

Fed by `follower.py` from `tokenplan.keys` and `tokenplan.quota-status` (both read from
the beginning at start-up, then followed). Every answer says how fresh it is: the
status's `as_of.computed_at` and the cache's age (how long since the follower last
saw the end of both topics).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from gateway.config import StalePolicy
from gateway.quota.entries import KeyEntry, StatusEntry
from gateway.quota.spend import SpendBook

__all__ = ["Decision", "QuotaCache", "REFUSALS"]

#: reason -> (HTTP status, kind). The kind picks each protocol's error type.
REFUSALS: dict[str, tuple[int, str]] = {
    "unknown_key": (401, "authentication"),
    "revoked_key": (401, "authentication"),
    "suspended_key": (403, "permission"),
    "no_package": (403, "permission"),
    "package_expired": (403, "permission"),
    "exhausted": (429, "rate_limit"),
    "in_flight_exceeds_remaining": (429, "rate_limit"),
    "quota_unavailable": (503, "unavailable"),
    "usage_spool_full": (503, "unavailable"),
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request; `reason` is "allowed", "status_miss" or a key of REFUSALS."""

    allowed: bool
    reason: str
    key: KeyEntry | None
    status: StatusEntry | None
    cache_age_ms: float | None
    stale: bool = False

    @property
    def status_as_of(self) -> str | None:
        return self.status.computed_at if self.status is not None else None


class QuotaCache:
    """Keys by hash and statuses by account, with the spend this gateway has in flight."""

    def __init__(self, stale_after_ms: int, stale_policy: StalePolicy, spend: SpendBook) -> None:
        self.keys: dict[str, KeyEntry] = {}  # key hash -> entry
        self._hash_of: dict[str, str] = {}  # key_id -> key hash (a revocation replaces it)
        self.statuses: dict[str, StatusEntry] = {}
        #: key_id -> the usage policy's suspension (tokenplan.key-status), beside the key's own state.
        self.suspended: set[str] = set()
        self.spend = spend
        self.stale_after_ms = stale_after_ms
        self.stale_policy = stale_policy
        #: Wall-clock ms when the follower last saw the end of both topics (None: not yet).
        self.caught_up_at_ms: float | None = None

    # ------------------------------------------------------------------ feeding
    def put_key(self, key_hash: str, entry: KeyEntry) -> None:
        old = self._hash_of.get(entry.key_id)
        if old is not None and old != key_hash:
            self.keys.pop(old, None)
        self._hash_of[entry.key_id] = key_hash
        self.keys[key_hash] = entry

    def put_key_status(self, key_id: str, status: str) -> None:
        if status == "suspended":
            self.suspended.add(key_id)
        else:
            self.suspended.discard(key_id)

    def put_status(self, account_id: str, entry: StatusEntry, usage_topic: str) -> None:
        self.statuses[account_id] = entry
        if entry.source is not None and entry.source[0] == usage_topic:
            self.spend.confirm(account_id, entry.source[1], entry.source[2])

    # ------------------------------------------------------------------ deciding
    def age_ms(self, now_ms: float) -> float | None:
        return None if self.caught_up_at_ms is None else max(0.0, now_ms - self.caught_up_at_ms)

    def decide(self, key_hash: str, estimate: Decimal, now_ms: float, now_s: float) -> Decision:
        """The decision from memory; reason "status_miss" when the account has no status yet."""
        age = self.age_ms(now_ms)
        key = self.keys.get(key_hash)
        if key is None:
            return Decision(False, "unknown_key", None, None, age)
        if key.status != "active":
            return Decision(False, "revoked_key" if key.status == "revoked" else "suspended_key", key, None, age)
        if key.key_id in self.suspended:
            return Decision(False, "suspended_key", key, None, age)
        status = self.statuses.get(key.account_id)
        if age is None or age > self.stale_after_ms:
            if self.stale_policy == "fail-open" and status is not None and status.status == "active":
                # Last seen active: served on the last known credits, with this gateway's own
                # pending spend still counted against them (the overspend bound of fail-open).
                return replace(self.decide_status(key, status, estimate, age, now_s), stale=True)
            return Decision(False, "quota_unavailable", key, status, age, stale=True)
        if status is None:
            return Decision(False, "status_miss", key, None, age)
        return self.decide_status(key, status, estimate, age, now_s)

    def decide_status(self, key: KeyEntry, status: StatusEntry, estimate: Decimal, age: float | None,
                      now_s: float) -> Decision:
        """The rules on a known status: package, exhaustion, then this gateway's pending spend."""
        if status.status == "none":
            return Decision(False, "no_package", key, status, age)
        if status.status == "expired":
            return Decision(False, "package_expired", key, status, age)
        if not status.allowed or status.status == "exhausted":
            return Decision(False, "exhausted", key, status, age)
        if status.remaining is not None and estimate > 0:
            pending = self.spend.pending(key.account_id, now_s)
            if pending > 0 and pending + estimate > status.remaining:
                return Decision(False, "in_flight_exceeds_remaining", key, status, age)
        return Decision(True, "allowed", key, status, age)
