"""A small account history folded by the projector's own Fold, for the dashboard tests and the bench."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from projections.fold import Fold
from tests.projections.builders import T0, balance, package, quota, record, rejected, reset_offsets, usage_object

#: "Now" of the dashboard tests: a day and a half into alice's package (T0 is 02:00 UTC).
NOW = T0 + timedelta(hours=36, minutes=30)
LIMIT = "10000"


def status_body(account: str, used: str, state: str = "active", limit: str = LIMIT, at: datetime = NOW) -> dict:
    pkg = package(limit=limit)
    from decimal import Decimal
    remaining = str(max(Decimal(limit) - Decimal(used), Decimal(0)))
    return {"account_id": account, "status": state, "allowed": state == "active", "tier": "lite", "period": "monthly",
            "credits_limit": limit, "credits_used": used, "credits_remaining": remaining,
            "valid_from": pkg["valid_from"], "valid_until": pkg["valid_until"],
            "as_of": {"computed_at": pkg["valid_from"] if at is None else at.isoformat().replace("+00:00", "Z"),
                      "event_time": at.isoformat().replace("+00:00", "Z"), "log": None, "source": None}}


def alice_records() -> list:
    """alice buys a 10 000-credit lite package, uses two paid models and a free one, peak and off-peak,
    crosses 80 % and 90 %; bob is exhausted; two dead letters."""
    pkg = package(limit=LIMIT)
    at = lambda hours, minutes=0: T0 + timedelta(hours=hours, minutes=minutes)  # noqa: E731
    charges = [  # (hours after T0, model, charged, offpeak, saved)
        (1, "MiMo-V2.5-Pro", "1000", False, "0"), (2, "MiMo-V2.5-Pro", "500", False, "0"),
        (2, "mimo-v2.5", "250", False, "0"), (15, "MiMo-V2.5-Pro", "4000", True, "1000"),  # 17:00 UTC: off-peak
        (16, "mimo-v2.5", "800", True, "200"), (16, "MiMo-V2.5-TTS", "0", True, "0"),
        (30, "MiMo-V2.5-Pro", "2000", False, "0"), (36, "mimo-v2.5", "450", False, "0")]
    records = [record("balance-changed", balance("buy", T0, "0", cause_type="plan.purchased", pkg=pkg, amount="6.3",
                                                 discount="first_purchase"))]
    used = 0
    for index, (hours, model, charged, offpeak, saved) in enumerate(charges):
        used += int(charged)
        usage = usage_object(model=model, hit=100 * index, miss=1000 + index, output=50 + index, offpeak=offpeak,
                             saved=saved)
        records.append(record("balance-changed", balance(f"use-{index}", at(hours, 10), str(used), charged, pkg=pkg,
                                                         usage=usage)))
    records.append(record("quota-status", status_body("alice", "8000", at=at(30, 10)), key="alice"))
    bob = package(limit="100")
    records += [record("balance-changed", balance("bob-buy", T0, "0", account="bob", cause_type="plan.purchased",
                                                  pkg=bob, amount="6.3"), partition=1),
                record("balance-changed", balance("bob-use", at(3), "100", "100", account="bob", pkg=bob,
                                                  usage=usage_object()), partition=1),
                record("quota-exhausted", quota("bob-x", "quota.exhausted", at(3), "100", account="bob", pkg=bob),
                       partition=1),
                record("quota-status", status_body("bob", "100", state="exhausted", limit="100", at=at(3)), key="bob",
                       partition=1),
                record("rejected", rejected("usage_before_package", "u-early", 1)),
                record("rejected", rejected("usage_before_package", "u-early-2", 2)),
                record("rejected", rejected("invalid_event", "u-bad", 3))]
    return records


def fill(engine: Engine) -> None:
    """Fold alice's and bob's history (the projector's code, the projector's tables)."""
    reset_offsets()
    with engine.begin() as connection:
        Fold().apply(connection, alice_records())
