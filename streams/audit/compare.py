"""Compare a replay of the ledger-log with what the live system answers.

Pure functions over views (dicts): the `tokenplan audit` command gathers the two
sides (replay from Kafka, lookups over HTTP) and calls `compare`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

#: The fields of the account view that must be equal (the replay view of issue 3).
VIEW_FIELDS = ("status", "tier", "period", "credits_limit", "credits_used", "credits_remaining",
               "valid_from", "valid_until")


@dataclass
class AccountDiff:
    """One account whose live answer differs from the replay."""

    account_id: str
    kind: str  # "different" | "missing_live" | "missing_replay" | "live_ahead"
    fields: dict[str, tuple] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"account_id": self.account_id, "kind": self.kind,
                "fields": {name: {"replay": pair[0], "live": pair[1]} for name, pair in self.fields.items()}}


@dataclass
class AuditReport:
    accounts_checked: int = 0
    equal: int = 0
    #: Accounts whose live answer already reflects events after the replay ended:
    #: not a difference, but not comparable either (run the audit again when quiet).
    live_ahead: int = 0
    diffs: list[AccountDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs

    def summary(self) -> dict:
        return {"accounts_checked": self.accounts_checked, "equal": self.equal, "live_ahead": self.live_ahead,
                "different": len(self.diffs), "ok": self.ok}


def live_is_ahead(live: dict, end_offsets: dict[str, int]) -> bool:
    """The live answer reflects a ledger-log record at or past where the replay stopped."""
    log = (live.get("as_of") or {}).get("log")
    return log is not None and log["offset"] >= end_offsets.get(str(log["partition"]), 0)


def compare(replayed: dict[str, dict], live: dict[str, dict | None], end_offsets: dict[str, int]) -> AuditReport:
    """Account by account: replayed views vs live lookups (None = the live side has no answer)."""
    report = AuditReport()
    for account_id in sorted(set(replayed) | set(live)):
        report.accounts_checked += 1
        mine, theirs = replayed.get(account_id), live.get(account_id)
        if theirs is None:
            report.diffs.append(AccountDiff(account_id, "missing_live"))
            continue
        if mine is None:
            if live_is_ahead(theirs, end_offsets):
                report.live_ahead += 1
            else:
                report.diffs.append(AccountDiff(account_id, "missing_replay"))
            continue
        different = {name: (mine.get(name), theirs.get(name)) for name in VIEW_FIELDS if mine.get(name) != theirs.get(name)}
        if not different:
            report.equal += 1
        elif live_is_ahead(theirs, end_offsets):
            report.live_ahead += 1
        else:
            report.diffs.append(AccountDiff(account_id, "different", different))
    return report


def what_if(current: dict[str, dict], alternative: dict[str, dict]) -> dict[str, dict]:
    """Per account, credits used now and under another catalog (re-rated from the same log)."""
    changes = {}
    for account_id in sorted(set(current) | set(alternative)):
        used_now = Decimal(current.get(account_id, {}).get("credits_used") or 0)
        used_alt = Decimal(alternative.get(account_id, {}).get("credits_used") or 0)
        if used_now != used_alt:
            changes[account_id] = {"credits_used": str(used_now), "credits_used_what_if": str(used_alt),
                                   "delta": str(used_alt - used_now)}
    return changes
