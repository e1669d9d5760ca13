"""Usage-policy records built from the contract's models (schemas.policy), for the projection tests."""
from __future__ import annotations

from datetime import datetime, timedelta

from projections.facts import Record
from schemas.policy import Classification, KeyReinstated, PolicyFact, PolicyViolation
from tests.projections.builders import T0, record

RULE = "ua:python-requests"


def violation(n: int, key: str = "key-s", account: str = "alice", at: datetime | None = None,
              rule: str = RULE, client: str = "python-requests/2.32.3") -> PolicyViolation:
    return PolicyViolation(
        type="policy.violation", event_id=f"req-{key}-{n}:violation", occurred_at=at or T0 + timedelta(minutes=n),
        account_id=account, key_id=key, request_event_id=f"req-{key}-{n}",
        classification=Classification(kind="non_coding", rule=rule, rules_version="2026-05", unambiguous=False),
        cluster="sgp", protocol="openai", client=client)


def fact(kind: str, cause: PolicyViolation | KeyReinstated, requests: list[str], violations: int | None = None,
         rules: dict[str, int] | None = None, message: str = "") -> PolicyFact:
    return PolicyFact(
        type=kind, event_id=f"{cause.event_id}:{kind}", cause_event_id=cause.event_id,
        occurred_at=cause.occurred_at, account_id=cause.account_id, key_id=cause.key_id,
        violations=len(requests) if violations is None else violations, window_s=86400,
        rules=rules if rules is not None else ({RULE: len(requests)} if requests else {}),
        request_event_ids=requests, message=message or f"{kind} for {cause.key_id}")


def reinstated(key: str = "key-s", account: str = "alice", at: datetime | None = None) -> KeyReinstated:
    return KeyReinstated(type="key.reinstated", event_id=f"reinstate-{key}", occurred_at=at or T0 + timedelta(hours=3),
                         account_id=account, key_id=key, reason="appeal accepted")


def policy_record(model, partition: int = 0, offset: int | None = None) -> Record:
    """A policy.violation / key.reinstated on tokenplan.policy, a PolicyFact on tokenplan.policy-facts."""
    kind = "policy-facts" if isinstance(model, PolicyFact) else "policy"
    return record(kind, model.model_dump(mode="json"), partition=partition, offset=offset, key=model.account_id)


def scenario(key: str = "key-s", account: str = "alice", count: int = 8, base: datetime = T0,
             reinstate: bool = True) -> list[Record]:
    """`count` violations of one key, a warning at the 3rd, a suspension at the 6th, then a reinstatement
    (the input and its fact, unless not `reinstate`), as the gateway and the worker would publish them."""
    violations = [violation(n, key, account, at=base + timedelta(minutes=n)) for n in range(1, count + 1)]
    records: list[Record] = []
    for n, item in enumerate(violations, start=1):
        records.append(policy_record(item))
        if n == 3:
            records.append(policy_record(fact("policy.warning", item, [v.request_event_id for v in violations[:3]])))
        if n == 6:
            records.append(policy_record(fact("key.suspended", item, [v.request_event_id for v in violations[:6]])))
    if not reinstate:
        return records
    back = reinstated(key, account, at=base + timedelta(hours=3))
    records += [policy_record(back), policy_record(fact("key.reinstated", back, [], violations=0,
                                                        message="reinstated: appeal accepted"))]
    return records
