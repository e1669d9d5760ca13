"""Named rejection reasons: what a bad or refused event gets instead of a crash.

Each reason has a stable code (the wire value) and a human-readable
explanation. Details never echo a secret key: every detail passes `redact`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Reason", "Rejection", "SECRET_KEY_PATTERN", "contains_secret", "redact"]

#: Something shaped like a Token Plan API key: `tp-` then 8+ key characters.
SECRET_KEY_PATTERN = re.compile(r"tp-[A-Za-z0-9_\-]{8,}")


def contains_secret(text: str) -> bool:
    """True when `text` holds something shaped like a secret key."""
    return "tp-" in text and SECRET_KEY_PATTERN.search(text) is not None


def redact(text: str) -> str:
    """Replace every key-shaped substring by `tp-***`, so it can be logged."""
    if "tp-" not in text:
        return text
    return SECRET_KEY_PATTERN.sub("tp-***", text)


class Reason(StrEnum):
    """Rejection codes. The value is the wire code; `explanation` is for humans."""

    INVALID_JSON = "invalid_json"
    EVENT_TOO_LARGE = "event_too_large"
    INVALID_EVENT = "invalid_event"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TOKENS_OUT_OF_RANGE = "tokens_out_of_range"
    ID_TOO_LONG = "id_too_long"
    SECRET_IN_EVENT = "secret_in_event"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    UNKNOWN_MODEL = "unknown_model"
    NO_CATALOG_VERSION = "no_catalog_version"
    USAGE_OUTSIDE_PACKAGE = "usage_outside_package"
    USAGE_TOO_LATE = "usage_too_late"
    PERIOD_PRUNED = "period_pruned"
    PACKAGE_ALREADY_VALID = "package_already_valid"
    NO_VALID_PACKAGE = "no_valid_package"
    DOWNGRADE_NOT_ALLOWED = "downgrade_not_allowed"
    UPGRADE_FROM_MAX = "upgrade_from_max"
    UPGRADE_TOO_LATE = "upgrade_too_late"
    UPGRADE_ORPHANS_USAGE = "upgrade_orphans_usage"
    NO_PACKAGE_TO_RENEW = "no_package_to_renew"
    RENEWAL_LAPSED = "renewal_lapsed"
    PLAN_EVENT_OUT_OF_ORDER = "plan_event_out_of_order"
    REFRESH_TOO_LATE = "refresh_too_late"
    TOO_MANY_REFRESHES = "too_many_refreshes"
    UNKNOWN_TIER = "unknown_tier"
    UNKNOWN_PRICE = "unknown_price"
    MISSING_ACCOUNT = "missing_account"

    @property
    def explanation(self) -> str:
        """One sentence saying what the code means."""
        return _EXPLANATIONS[self]


_EXPLANATIONS: dict[Reason, str] = {
    Reason.INVALID_JSON: "the payload is not a JSON object",
    Reason.EVENT_TOO_LARGE: "the payload exceeds event_bytes_max",
    Reason.INVALID_EVENT: "a field is missing, has the wrong type or an unknown value",
    Reason.UNKNOWN_TYPE: "the event `type` is not one of the contract's types",
    Reason.INVALID_TIMESTAMP: "occurred_at is not RFC 3339 with a UTC offset",
    Reason.TOKENS_OUT_OF_RANGE: "a token count is negative or above tokens_per_field_max",
    Reason.ID_TOO_LONG: "event_id or account_id is longer than its limit",
    Reason.SECRET_IN_EVENT: "a field holds something shaped like a secret API key (tp-...)",
    Reason.DUPLICATE_CONFLICT: "this event_id was already applied with different content",
    Reason.UNKNOWN_MODEL: "the model is not in the catalog in effect at occurred_at",
    Reason.NO_CATALOG_VERSION: "no catalog version is in effect at occurred_at",
    Reason.USAGE_OUTSIDE_PACKAGE: "occurred_at falls outside every package period of the account",
    Reason.USAGE_TOO_LATE: ("occurred_at is more than lateness_max before the latest usage already applied "
                            "on its partition: too late to charge (and older than the dedupe memory)"),
    Reason.PERIOD_PRUNED: "occurred_at falls in a package period older than packages_max kept",
    Reason.PACKAGE_ALREADY_VALID: "a package is still valid; upgrade instead of purchasing",
    Reason.NO_VALID_PACKAGE: "no package is valid at occurred_at",
    Reason.DOWNGRADE_NOT_ALLOWED: "the new tier is not strictly higher than the valid package's",
    Reason.UPGRADE_FROM_MAX: "the valid package is already Max",
    Reason.UPGRADE_TOO_LATE: "kept for old logs: no longer produced (usage entries are never compacted now)",
    Reason.UPGRADE_ORPHANS_USAGE: ("usage already recorded after the end of the package the upgrade would open "
                                   "(a shorter period): it would belong to no package"),
    Reason.NO_PACKAGE_TO_RENEW: "the account has no package to renew",
    Reason.RENEWAL_LAPSED: "the period the renewal would open is already over at occurred_at",
    Reason.PLAN_EVENT_OUT_OF_ORDER: "a plan event predates the account's latest package",
    Reason.REFRESH_TOO_LATE: "kept for old logs: no longer produced (usage entries are never compacted now)",
    Reason.TOO_MANY_REFRESHES: "the account already holds refreshes_max refresh instants",
    Reason.UNKNOWN_TIER: "the tier or period is not in the catalog",
    Reason.UNKNOWN_PRICE: "the catalog has no price for this tier, period and currency",
    Reason.MISSING_ACCOUNT: "this event type requires account_id",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused event: the code, a redacted human detail, and what it was about."""

    reason: Reason
    detail: str
    event_id: str | None = None
    account_id: str | None = None

    def __post_init__(self) -> None:
        # Ids are echoed back too, so they are redacted like the detail.
        object.__setattr__(self, "detail", redact(self.detail))
        if self.event_id is not None:
            object.__setattr__(self, "event_id", redact(self.event_id))
        if self.account_id is not None:
            object.__setattr__(self, "account_id", redact(self.account_id))

    def to_dict(self) -> dict:
        """JSON-able form used in the replay output and the dead-letter topic."""
        return {
            "event_id": self.event_id,
            "account_id": self.account_id,
            "reason": self.reason.value,
            "detail": self.detail,
        }


def reject(reason: Reason, detail: str = "", *, event_id: str | None = None,
           account_id: str | None = None) -> Rejection:
    """Build a Rejection whose detail defaults to the reason's explanation."""
    return Rejection(reason, detail or reason.explanation, event_id, account_id)
