"""The classification rules as data: the version of `gateway/policy/tools.json` in effect.

The markers of coding tools change with every tool release (a new User-Agent, a new
system prompt), so they live in versioned data like the plan catalog: a decision records
the rules version it was made under, and an appeal is judged against those rules.
"""
from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from datetime import datetime

import orjson

from schemas.events import parse_instant

__all__ = ["ClientRule", "HeaderRule", "PolicyRules", "ToolRule", "load_policy_rules", "parse_policy_rules"]


@dataclass(frozen=True)
class HeaderRule:
    """A request header a tool sends; the pattern's first group, if any, is the tool's version."""

    header: str  # lower-case
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class ToolRule:
    """A known coding tool: its User-Agent (group 1 = version), header markers, prompt phrases."""

    id: str
    name: str
    user_agent: re.Pattern[str] | None
    headers: tuple[HeaderRule, ...]
    phrases: tuple[str, ...]  # lower-case substrings of its system prompt


@dataclass(frozen=True)
class ClientRule:
    """A non-coding client recognised by its User-Agent (a bare HTTP client, an SDK default)."""

    id: str
    user_agent: re.Pattern[str]


@dataclass(frozen=True)
class PolicyRules:
    """One version of the rules, compiled."""

    version: str
    tools: tuple[ToolRule, ...]
    agentic_phrases: tuple[str, ...]  # lower-case; phrases of coding agents that name no tool
    coding_tool_names: frozenset[str]  # lower-case
    coding_tool_names_min: int
    bare_clients: tuple[ClientRule, ...]
    sdk_defaults: tuple[ClientRule, ...]


def _pattern(text: str) -> re.Pattern[str]:
    """Markers compare case-insensitively: tools and proxies are not consistent about case."""
    return re.compile(text, re.IGNORECASE)


def _tool(data: dict) -> ToolRule:
    return ToolRule(
        id=data["id"], name=data["name"],
        user_agent=_pattern(data["user_agent"]) if data.get("user_agent") else None,
        headers=tuple(HeaderRule(h["header"].lower(), _pattern(h["pattern"])) for h in data.get("headers", ())),
        phrases=tuple(p.lower() for p in data.get("system_prompt", ())))


def _clients(items: list[dict]) -> tuple[ClientRule, ...]:
    return tuple(ClientRule(item["id"], _pattern(item["user_agent"])) for item in items)


def parse_policy_rules(version: dict) -> PolicyRules:
    """Compile one version object of tools.json."""
    return PolicyRules(
        version=version["version"],
        tools=tuple(_tool(tool) for tool in version["coding_tools"]),
        agentic_phrases=tuple(p.lower() for p in version.get("agentic_system_prompts", ())),
        coding_tool_names=frozenset(n.lower() for n in version["coding_tool_names"]),
        coding_tool_names_min=int(version["coding_tool_names_min"]),
        bare_clients=_clients(version["bare_clients"]),
        sdk_defaults=_clients(version["sdk_defaults"]))


def load_policy_rules(at: datetime, text: bytes | None = None) -> PolicyRules:
    """The rules in effect at `at` (the packaged tools.json unless `text` is given).

    Before the first version the first one applies, as with the catalog.
    """
    data = orjson.loads(text if text is not None else
                        importlib.resources.files("gateway.policy").joinpath("tools.json").read_bytes())
    versions = sorted(data["versions"], key=lambda v: parse_instant(v["effective_from"]))
    current = [v for v in versions if parse_instant(v["effective_from"]) <= at] or versions[:1]
    return parse_policy_rules(current[-1])
