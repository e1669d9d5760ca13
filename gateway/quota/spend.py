"""Credits this gateway knows are spent or about to be, that the status does not show yet.

Between a request that exhausts an account and the status record saying so, other
requests would overspend. So the gateway counts, per account, (1) reservations of its
in-flight requests (an upper estimate from max_tokens and the model's peak ratio), and
(2) finished requests whose usage event is sent but not yet reflected in a status
record (matched by the usage record's partition and offset, or dropped after a TTL).
Both are subtracted from the cached remaining credits before a request is allowed.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["AccountSpend", "SpendBook"]

ZERO = Decimal(0)


@dataclass(slots=True)
class AccountSpend:
    """One account's in-flight reservations and unconfirmed spend."""

    reserved: dict[str, Decimal] = field(default_factory=dict)  # request id -> estimate
    unconfirmed: deque[tuple[int, int, Decimal, float]] = field(default_factory=deque)  # partition, offset, credits, until

    def pending(self) -> Decimal:
        return sum(self.reserved.values(), ZERO) + sum((entry[2] for entry in self.unconfirmed), ZERO)


class SpendBook:
    """Per-account pending credits; every entry ends (release, confirmation or TTL): bounded."""

    def __init__(self, unconfirmed_ttl_s: float) -> None:
        self._accounts: dict[str, AccountSpend] = {}
        self._ttl_s = unconfirmed_ttl_s

    def pending(self, account_id: str, now: float) -> Decimal:
        """Credits reserved or spent by this gateway and not yet in the account's status."""
        spend = self._accounts.get(account_id)
        if spend is None:
            return ZERO
        self._expire(account_id, spend, now)
        return spend.pending()

    def reserve(self, account_id: str, request_id: str, credits: Decimal) -> None:
        self._accounts.setdefault(account_id, AccountSpend()).reserved[request_id] = credits

    def settle(self, account_id: str, request_id: str, sent: tuple[int, int] | None, credits: Decimal,
               now: float) -> None:
        """The request ended: its reservation becomes the spend of its usage record.

        `sent` is the record's (partition, offset); None (spooled) is only ever ended by the TTL.
        """
        spend = self._accounts.get(account_id)
        if spend is None:
            return
        spend.reserved.pop(request_id, None)
        if credits > 0:
            partition, offset = sent if sent is not None else (-1, -1)
            spend.unconfirmed.append((partition, offset, credits, now + self._ttl_s))
        self._drop_if_empty(account_id, spend)

    def confirm(self, account_id: str, partition: int, offset: int) -> None:
        """A status record shows the account's usage up to `offset` of `partition`."""
        spend = self._accounts.get(account_id)
        if spend is None:
            return
        spend.unconfirmed = deque(e for e in spend.unconfirmed if not (e[0] == partition and e[1] <= offset))
        self._drop_if_empty(account_id, spend)

    def accounts(self) -> int:
        return len(self._accounts)

    def _expire(self, account_id: str, spend: AccountSpend, now: float) -> None:
        while spend.unconfirmed and spend.unconfirmed[0][3] <= now:
            spend.unconfirmed.popleft()
        self._drop_if_empty(account_id, spend)

    def _drop_if_empty(self, account_id: str, spend: AccountSpend) -> None:
        if not spend.reserved and not spend.unconfirmed:
            self._accounts.pop(account_id, None)
