"""Named limits of the core: every bound the rules rely on, with documented defaults.

TigerBeetle style: put a limit on everything, name it with its unit last,
and check it in code. Contract bounds (ids, token counts) come from
`schemas.events`; a deployment may tighten them here, never loosen them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from schemas.events import ACCOUNT_ID_LENGTH_MAX, EVENT_ID_LENGTH_MAX, TOKENS_PER_FIELD_MAX

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds checked by `decode_event` and `step`.

    tokens_per_field_max: cap on each of the three token counts of one usage
        event (default 10,000,000). Today's largest context is ~1M tokens, so
        10x headroom; anything above is a broken gateway, refused as
        `tokens_out_of_range` rather than charged.
    event_id_length_max / account_id_length_max: 128 characters (the contract).
    event_bytes_max: a raw event larger than 64 KiB is refused before parsing.
    lateness_max: how late (in event time) usage may arrive: usage whose
        occurred_at is more than this before its partition's event-time high-water
        mark (the latest occurred_at of usage applied on that ledger-log partition)
        is refused as `usage_too_late`, never charged unchecked. Default 35 days
        (Stripe's bound for backdated usage).
    dedupe_window: how long (in event time, behind the same high-water mark) an
        applied event id is remembered with its fingerprint; at least
        `lateness_max`, so an accepted event can never duplicate another accepted
        event whose id was forgotten. Ids are dropped by whole days.
    packages_max: package periods kept per account (default 36: three years of
        monthly renewals). Older periods are pruned; usage that falls in a
        pruned period is refused as `period_pruned`.
    refreshes_max: refresh instants kept per account (default 64); refreshes
        older than every kept package are pruned first.
    global_refreshes_max: global refresh instants a `Fold` keeps (default 256).

    The worker and every replay must use the same limits (they change
    outcomes at the edges); `streams.config.limits_from_env` is that one place.
    """

    tokens_per_field_max: int = TOKENS_PER_FIELD_MAX
    event_id_length_max: int = EVENT_ID_LENGTH_MAX
    account_id_length_max: int = ACCOUNT_ID_LENGTH_MAX
    event_bytes_max: int = 65_536
    lateness_max: timedelta = timedelta(days=35)
    dedupe_window: timedelta = timedelta(days=35)
    packages_max: int = 36
    refreshes_max: int = 64
    global_refreshes_max: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.tokens_per_field_max <= TOKENS_PER_FIELD_MAX:
            raise ValueError("tokens_per_field_max must be in 1..%d" % TOKENS_PER_FIELD_MAX)
        if not 0 < self.event_id_length_max <= EVENT_ID_LENGTH_MAX:
            raise ValueError("event_id_length_max must be in 1..%d" % EVENT_ID_LENGTH_MAX)
        if not 0 < self.account_id_length_max <= ACCOUNT_ID_LENGTH_MAX:
            raise ValueError("account_id_length_max must be in 1..%d" % ACCOUNT_ID_LENGTH_MAX)
        for name in ("event_bytes_max", "packages_max",
                     "refreshes_max", "global_refreshes_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.lateness_max <= timedelta(0):
            raise ValueError("lateness_max must be positive")
        if self.dedupe_window < self.lateness_max:
            raise ValueError("dedupe_window must be at least lateness_max (else a retry inside the "
                             "lateness bound could be charged twice)")


DEFAULT_LIMITS = Limits()
