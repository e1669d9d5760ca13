"""Credits this gateway knows are spent or about to be, that the status does not show yet.

Between a request that exhausts an account and the status record saying so, other
requests would overspend. So the gateway counts, per account, (1) reservations of its
in-flight requests (an upper estimate from max_tokens and the model's peak ratio), and
(2) finished requests whose usage event is sent but not yet reflected in a status
record (matched by the usage record's partition and offset, or dropped after a TTL).
Both are subtracted from the cached remaining credits before a request is allowed.
Totals are kept as entries come and go, so a decision reads two numbers, never a list.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["AccountSpend", "SpendBook"]

ZERO = Decimal(0)


@dataclass(slots=True)
class AccountSpend:
    """One account's in-flight reservations and unconfirmed spend, with their totals."""

    reserved: dict[str, Decimal] = field(default_factory=dict)  # request id -> estimate
    reserved_total: Decimal = ZERO
    #: (partition, offset, credits, until) in settle order; partition -1: spooled, the TTL ends it.
    unconfirmed: deque[tuple[int, int, Decimal, float]] = field(default_factory=deque)
    unconfirmed_total: Decimal = ZERO

    def pending(self) -> Decimal:
        return self.reserved_total + self.unconfirmed_total

    def drop_head(self) -> None:
        self.unconfirmed_total -= self.unconfirmed.popleft()[2]


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
        while spend.unconfirmed and spend.unconfirmed[0][3] <= now:  # TTLs end in settle order
            spend.drop_head()
        self._drop_if_empty(account_id, spend)
        return spend.pending()

    def reserve(self, account_id: str, request_id: str, credits: Decimal) -> None:
        spend = self._accounts.setdefault(account_id, AccountSpend())
        spend.reserved_total += credits - spend.reserved.get(request_id, ZERO)
        spend.reserved[request_id] = credits

    def settle(self, account_id: str, request_id: str, sent: tuple[int, int] | None, credits: Decimal,
               now: float) -> None:
        """The request ended: its reservation becomes the spend of its usage record.

        `sent` is the record's (partition, offset); None (spooled) is only ever ended by the TTL.
        """
        spend = self._accounts.get(account_id)
        if spend is None:
            return
        spend.reserved_total -= spend.reserved.pop(request_id, ZERO)
        if credits > 0:
            partition, offset = sent if sent is not None else (-1, -1)
            spend.unconfirmed.append((partition, offset, credits, now + self._ttl_s))
            spend.unconfirmed_total += credits
        self._drop_if_empty(account_id, spend)

    def confirm(self, account_id: str, partition: int, offset: int) -> None:
        """A status record shows the account's usage up to `offset` of `partition`.

        Entries are in ack order, which is offset order for one account (one partition);
        an entry acked out of order stays until its TTL (counted longer: the safe side).
        """
        spend = self._accounts.get(account_id)
        if spend is None:
            return
        queue = spend.unconfirmed
        while queue and queue[0][0] == partition and queue[0][1] <= offset:
            spend.drop_head()
        self._drop_if_empty(account_id, spend)

    def accounts(self) -> int:
        return len(self._accounts)

    def _drop_if_empty(self, account_id: str, spend: AccountSpend) -> None:
        if not spend.reserved and not spend.unconfirmed:
            self._accounts.pop(account_id, None)
