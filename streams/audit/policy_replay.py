"""Replay the usage policy: fold `tokenplan.policy` records again and get the same decisions.

The live agent and this replay call the same pure `streams.ledger.usage_policy.apply`; a
difference between the facts replayed here and `tokenplan.policy-facts` means the live
run applied something else than its log (a skipped or doubled record).
"""
from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from schemas.policy import POLICY_INPUT_ADAPTER, PolicyFact
from streams.ledger.usage_policy import KeyPolicy, PolicyLimits, apply

__all__ = ["replay_policy"]


def replay_policy(values: Iterable[bytes], limits: PolicyLimits) -> tuple[list[PolicyFact], dict[str, KeyPolicy]]:
    """(every fact in log order, the final state per key) from policy record values in log order.

    Invalid records are skipped, as the live agent dead-letters them.
    """
    states: dict[str, KeyPolicy] = {}
    facts: list[PolicyFact] = []
    for value in values:
        try:
            event = POLICY_INPUT_ADAPTER.validate_json(value)
        except ValidationError:
            continue
        states[event.key_id], new, _changed = apply(states.get(event.key_id), event, limits)
        facts.extend(new)
    return facts, states
