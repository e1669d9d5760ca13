"""Named limits of the core: every bound the rules rely on, with documented defaults.

TigerBeetle style: put a limit on everything, name it with its unit last,
and check it in code. Contract bounds (ids, token counts) come from
`schemas.events`; a deployment may tighten them here, never loosen them.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    applied_ids_max: per-account dedupe memory (default 512 most recently
        applied event_ids with a content fingerprint). A redelivery older than
        that is no longer recognised; Kafka redeliveries are far more recent.
    usage_entries_max: per-package usage entries kept at their exact
        `occurred_at` (default 256) so a late refresh or upgrade can split a
        package's usage exactly. Beyond it the oldest half is folded into
        per-segment totals and the package's split horizon moves forward; a
        refresh or upgrade at or before that horizon is refused
        (`refresh_too_late` / `upgrade_too_late`) rather than guessed.
    packages_max: package periods kept per account (default 36: three years of
        monthly renewals). Older periods are pruned; usage that falls in a
        pruned period is refused as `period_pruned`.
    refreshes_max: refresh instants kept per account (default 64); refreshes
        older than every kept package are pruned first.
    global_refreshes_max: global refresh instants a `Ledger` keeps (default 256).

    Why these sizes: the streaming ledger writes an account's whole state to its
    table (and changelog) on every event, so per-account memory is bounded
    tightly. The worker and every replay must use the same limits (they change
    outcomes at the edges); `streams.config.limits_from_env` is that one place.
    """

    tokens_per_field_max: int = TOKENS_PER_FIELD_MAX
    event_id_length_max: int = EVENT_ID_LENGTH_MAX
    account_id_length_max: int = ACCOUNT_ID_LENGTH_MAX
    event_bytes_max: int = 65_536
    applied_ids_max: int = 512
    usage_entries_max: int = 256
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
        for name in ("event_bytes_max", "applied_ids_max", "packages_max",
                     "refreshes_max", "global_refreshes_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.usage_entries_max < 2:
            raise ValueError("usage_entries_max must be at least 2")


DEFAULT_LIMITS = Limits()
