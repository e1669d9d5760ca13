"""Classifying a request: a coding tool, a clearly non-coding client, or unknown (pure).

The plan may be used only from programming tools; automated scripts and application
backends are a violation that can cost the subscriber the key. A wrong suspension is
worse than a missed one, so the rules lean one way: any coding marker wins over any
non-coding marker, and without clear evidence the answer is `unknown`.

Rules, first match wins:
1. a known tool's User-Agent (`ua:<tool>`) or header marker (`header:<tool>`) -> coding_tool;
2. an agentic system-prompt phrase (`body:agentic-system-prompt`, the tool when the phrase
   names one) or enough coding tool names in `tools` (`body:coding-tool-names`) -> coding_tool;
3. a bare HTTP client's User-Agent (`ua:<client>`) -> non_coding, unambiguous only when
   the key's cadence is machine-like too;
4. an SDK's default User-Agent -> non_coding with a machine-like cadence
   (`sdk-default+machine-cadence`, never unambiguous: coding tools are built on these SDKs),
   else unknown (`sdk-default`);
5. anything else -> unknown (`default:unknown`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.policy.body import prompt_texts, tool_names
from gateway.policy.cadence import CadenceSummary
from gateway.policy.rules import ClientRule, HeaderRule, PolicyRules, ToolRule, load_policy_rules

__all__ = ["Classification", "Kind", "classify", "load_policy_rules"]

Kind = Literal["coding_tool", "unknown", "non_coding"]


@dataclass(frozen=True)
class Classification:
    """A decision and what it rests on: the rule id and the rules version, for audit and appeal.

    `unambiguous` says the evidence needs no human review: true for a named coding marker,
    true for non_coding only when a bare client's User-Agent meets a machine-like cadence.
    """

    kind: Kind
    tool: str | None
    tool_version: str | None
    rule: str
    rules_version: str
    unambiguous: bool


def _version(match) -> str | None:
    """The first group of a marker's match (the tool's version), when the pattern has one."""
    return match.group(1) if match is not None and match.re.groups else None


def _header_match(headers: Mapping[str, str], rule: HeaderRule):
    value = headers.get(rule.header)
    return rule.pattern.search(value) if value else None


def _by_user_agent(user_agent: str, rules: PolicyRules) -> tuple[ToolRule, str | None] | None:
    for tool in rules.tools:
        match = tool.user_agent.search(user_agent) if tool.user_agent is not None else None
        if match is not None:
            return tool, _version(match)
    return None


def _by_header(headers: Mapping[str, str], rules: PolicyRules) -> tuple[ToolRule, str | None] | None:
    for tool in rules.tools:
        matches = [m for m in (_header_match(headers, rule) for rule in tool.headers) if m is not None]
        if matches:
            return tool, next((v for v in map(_version, matches) if v), None)
    return None


def _by_prompt(body: dict, rules: PolicyRules) -> tuple[bool, str | None]:
    """Whether a system text holds an agentic phrase, and the tool it names (None: unnamed)."""
    texts = prompt_texts(body)
    for tool in rules.tools:
        if any(phrase in text for phrase in tool.phrases for text in texts):
            return True, tool.id
    return any(phrase in text for phrase in rules.agentic_phrases for text in texts), None


def _client(user_agent: str, clients: tuple[ClientRule, ...]) -> ClientRule | None:
    return next((c for c in clients if c.user_agent.search(user_agent)), None)


def _decision(kind: Kind, rule: str, rules: PolicyRules, *, tool: str | None = None,
              version: str | None = None, unambiguous: bool = False) -> Classification:
    return Classification(kind=kind, tool=tool, tool_version=version, rule=rule,
                          rules_version=rules.version, unambiguous=unambiguous)


def _coding(headers: Mapping[str, str], body: dict, rules: PolicyRules) -> Classification | None:
    """Rules 1 and 2: any coding marker."""
    user_agent = headers.get("user-agent", "")
    if (found := _by_user_agent(user_agent, rules)) is not None:
        return _decision("coding_tool", f"ua:{found[0].id}", rules, tool=found[0].id, version=found[1],
                         unambiguous=True)
    if (found := _by_header(headers, rules)) is not None:
        return _decision("coding_tool", f"header:{found[0].id}", rules, tool=found[0].id, version=found[1],
                         unambiguous=True)
    found_phrase, named = _by_prompt(body, rules)
    if found_phrase:
        return _decision("coding_tool", "body:agentic-system-prompt", rules, tool=named, unambiguous=True)
    if len(tool_names(body) & rules.coding_tool_names) >= rules.coding_tool_names_min:
        return _decision("coding_tool", "body:coding-tool-names", rules, unambiguous=True)
    return None


def classify(headers: Mapping[str, str], body: dict, cadence: CadenceSummary | None,
             rules: PolicyRules) -> Classification:
    """Classify one request from its headers (lower-case names), JSON body and the key's cadence."""
    if (coding := _coding(headers, body, rules)) is not None:
        return coding
    user_agent = headers.get("user-agent", "")
    machine = cadence is not None and cadence.machine_like
    if (bare := _client(user_agent, rules.bare_clients)) is not None:
        return _decision("non_coding", f"ua:{bare.id}", rules, unambiguous=machine)
    if _client(user_agent, rules.sdk_defaults) is not None:
        if machine:
            return _decision("non_coding", "sdk-default+machine-cadence", rules)
        return _decision("unknown", "sdk-default", rules)
    return _decision("unknown", "default:unknown", rules)
