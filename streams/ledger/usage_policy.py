"""The usage policy as a fold: violations of a key -> warning -> suspension; reinstatement.

The product document allows the plan's quota only from programming tools and lets the
platform suspend keys used otherwise. A wrong suspension is worse than a missed one, so:
- one request never suspends: a key is warned after `warn_after` non-coding requests
  inside `window_s` of event time, and suspended after `suspend_after`;
- a suspension needs a warning at least `grace_s` earlier, unless the requests that
  reached the threshold are unambiguous (a bare HTTP client at a machine cadence);
- a reinstatement clears the key's count, so it starts again from zero.
Pure: time is the events' `occurred_at`; the worker's agent, a replay and the tests call
`apply` alike, so a replay of `tokenplan.policy` gives the same decisions.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from schemas.events import format_instant, parse_instant
from schemas.policy import KeyReinstated, PolicyFact, PolicyViolation

__all__ = ["KeyPolicy", "PolicyLimits", "apply", "decode_key_policy", "encode_key_policy"]


@dataclass(frozen=True)
class PolicyLimits:
    """The thresholds (TOKENPLAN_POLICY_*; defaults in the README)."""

    #: non-coding requests of a key inside the window before a policy.warning.
    warn_after: int = 5
    #: ... before key.suspended.
    suspend_after: int = 20
    #: The window, in event time.
    window_s: int = 3600
    #: How long after its warning an ambiguous key may be suspended (time to react).
    grace_s: int = 600
    #: Event ids remembered per key against redelivery (a redelivered input is a no-op).
    remembered_ids: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.warn_after <= self.suspend_after:
            raise ValueError("policy thresholds need 1 <= warn_after <= suspend_after")
        if self.window_s < 1 or self.grace_s < 0 or self.remembered_ids < 1:
            raise ValueError("policy window must be >= 1 s, grace >= 0 s, remembered ids >= 1")


@dataclass(frozen=True)
class KeyPolicy:
    """One key's policy state: the recent violations (bounded), warning and suspension."""

    key_id: str
    account_id: str
    #: (occurred_at RFC 3339, request event id, rule, unambiguous), oldest first, at most suspend_after.
    recent: tuple[tuple[str, str, str, bool], ...] = ()
    warned_at: str | None = None
    suspended: bool = False
    applied_ids: tuple[str, ...] = field(default=())


def apply(state: KeyPolicy | None, event: PolicyViolation | KeyReinstated,
          limits: PolicyLimits) -> tuple[KeyPolicy, list[PolicyFact], bool]:
    """(new state, facts, whether the key's status changed) for one policy input."""
    state = state or KeyPolicy(event.key_id, event.account_id)
    if event.event_id in state.applied_ids:
        return state, [], False
    state = replace(state, applied_ids=(state.applied_ids + (event.event_id,))[-limits.remembered_ids:])
    if isinstance(event, KeyReinstated):
        return _reinstate(state, event, limits)
    if event.classification.kind != "non_coding":
        return state, [], False  # gateways publish only non-coding requests; anything else counts nothing
    return _violation(state, event, limits)


def _violation(state: KeyPolicy, event: PolicyViolation, limits: PolicyLimits) -> tuple[KeyPolicy, list[PolicyFact], bool]:
    at = event.occurred_at
    since = at - timedelta(seconds=limits.window_s)
    entry = (format_instant(at), event.request_event_id, event.classification.rule, event.classification.unambiguous)
    recent = tuple(sorted(e for e in (*state.recent, entry) if parse_instant(e[0]) > since))[-limits.suspend_after:]
    state = replace(state, recent=recent)
    if state.suspended:
        return state, [], False
    facts: list[PolicyFact] = []
    warned = state.warned_at is not None and parse_instant(state.warned_at) > since
    if len(recent) >= limits.warn_after and not warned:
        facts.append(_fact("policy.warning", event, state, limits, _warning_text(limits)))
        state = replace(state, warned_at=format_instant(at))
    if len(recent) >= limits.suspend_after and _may_suspend(state, at, limits):
        facts.append(_fact("key.suspended", event, state, limits, _suspension_text(state, limits)))
        return replace(state, suspended=True), facts, True
    return state, facts, False


def _may_suspend(state: KeyPolicy, at: datetime, limits: PolicyLimits) -> bool:
    """A warning came first: long enough ago, or the requests leave no doubt."""
    if state.warned_at is None:
        return False
    if all(entry[3] for entry in state.recent):
        return True
    return at - parse_instant(state.warned_at) >= timedelta(seconds=limits.grace_s)


def _reinstate(state: KeyPolicy, event: KeyReinstated, limits: PolicyLimits) -> tuple[KeyPolicy, list[PolicyFact], bool]:
    fact = _fact("key.reinstated", event, state, limits, f"reinstated by an operator: {event.reason}")
    was_suspended = state.suspended
    return replace(state, recent=(), warned_at=None, suspended=False), [fact], was_suspended


def _fact(kind: str, event: PolicyViolation | KeyReinstated, state: KeyPolicy, limits: PolicyLimits,
          message: str) -> PolicyFact:
    rules = Counter(entry[2] for entry in state.recent)
    return PolicyFact(type=kind, event_id=f"{event.event_id}:{kind}", cause_event_id=event.event_id,
                      occurred_at=event.occurred_at, account_id=state.account_id, key_id=state.key_id,
                      violations=len(state.recent), window_s=limits.window_s, rules=dict(sorted(rules.items())),
                      request_event_ids=[entry[1] for entry in state.recent], message=message)


def _warning_text(limits: PolicyLimits) -> str:
    return (f"Token Plan serves programming tools only: this key sent requests that look like non-coding use "
            f"(scripts, application backends). After {limits.suspend_after} such requests within "
            f"{limits.window_s // 60} minutes the key is suspended.")


def _suspension_text(state: KeyPolicy, limits: PolicyLimits) -> str:
    return (f"suspended: {len(state.recent)} non-coding requests within {limits.window_s // 60} minutes "
            f"(Token Plan serves programming tools only). Appeal to support with the key id {state.key_id}.")


def encode_key_policy(state: KeyPolicy) -> dict:
    """The table value (JSON-ready)."""
    return {"k": state.key_id, "a": state.account_id, "r": [list(e) for e in state.recent], "w": state.warned_at,
            "s": state.suspended, "i": list(state.applied_ids)}


def decode_key_policy(data: dict) -> KeyPolicy:
    return KeyPolicy(data["k"], data["a"], tuple(tuple(e) for e in data["r"]), data["w"], data["s"], tuple(data["i"]))
