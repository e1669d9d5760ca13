"""One account's state: what the rules need about it, small and fixed-size in steady state.

The applied event ids and the usage entries are not here: they live in the event
memory (`streams.ledger.memory`), beside the state (TigerBeetle's accounts beside
their transfers). `step` (streams/ledger/step.py) is the one transition.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.ledger.packages import Package
from streams.ledger.prices import DiscountFlags
from streams.ledger.state_codec import state_from_dict, state_to_dict, state_to_json

__all__ = ["AccountState"]


@dataclass(slots=True)
class AccountState:
    """Everything the rules need about one account. JSON-able via to_dict.

    Copy-on-write: `step` never changes a state it was given; it returns a
    new one sharing unchanged parts (packages). Not `frozen=True` only for
    construction speed on the hot path. Small and fixed-size in steady state:
    the applied event ids and the usage entries live in the event memory
    (`streams.ledger.memory`), not here.

    packages: the kept package periods, oldest first (at most `packages_max`).
    refreshes: sorted refresh instants that apply to this account.
    Discount history: had_package, first_purchase_discount_used,
    auto_renew_activated, auto_renew_discount_used.
    pruned_until: end of the newest pruned period (usage before it: `period_pruned`).
    first_valid_from: start of the account's first package (view: none vs expired).
    """

    account_id: str
    packages: tuple[Package, ...] = ()
    refreshes: tuple[datetime, ...] = ()
    had_package: bool = False
    first_purchase_discount_used: bool = False
    auto_renew_activated: bool = False
    auto_renew_discount_used: bool = False
    pruned_until: datetime | None = None
    first_valid_from: datetime | None = None

    @classmethod
    def empty(cls, account_id: str, limits: Limits = DEFAULT_LIMITS) -> "AccountState":
        """A new account that has seen nothing."""
        return cls(account_id=account_id)

    def package_at(self, instant: datetime) -> Package | None:
        """The package period containing `instant`, None when none does."""
        index = self.package_index_at(instant)
        return None if index is None else self.packages[index]

    def package_index_at(self, instant: datetime) -> int | None:
        """Index of the package containing `instant` (searching newest first)."""
        packages = self.packages
        for index in range(len(packages) - 1, -1, -1):
            package = packages[index]
            if package.valid_from <= instant:
                return index if instant < package.valid_until else None
        return None

    def with_packages(self, packages: tuple[Package, ...]) -> "AccountState":
        """Same account with other packages (hot path: positional, no dataclasses.replace)."""
        return AccountState(self.account_id, packages, self.refreshes,
                            self.had_package, self.first_purchase_discount_used,
                            self.auto_renew_activated, self.auto_renew_discount_used,
                            self.pruned_until, self.first_valid_from)

    def discount_flags(self) -> DiscountFlags:
        """The history that decides purchase discounts."""
        return DiscountFlags(self.had_package, self.first_purchase_discount_used,
                             self.auto_renew_activated)

    def to_dict(self) -> dict:
        """Plain JSON-able form (Decimals as strings, instants as RFC 3339), for Faust tables."""
        return state_to_dict(self)

    def to_json(self) -> bytes:
        """Exactly `orjson.dumps(self.to_dict())`."""
        return state_to_json(self)

    @classmethod
    def from_dict(cls, data: dict, limits: Limits = DEFAULT_LIMITS) -> "AccountState":
        """Inverse of `to_dict`; raises ValueError on a malformed value."""
        return cls(**state_from_dict(data, limits))
