"""The usage policy: is a request from a programming tool, or clearly not? (pure).

The plan's quota may be used only from coding tools; scripts and application backends
are a violation. This package classifies requests and keeps no other state than the
bounded per-key cadence:
- `tools.json`: versioned markers of coding tools and of non-coding clients;
- `rules.py`: the version in effect, compiled;
- `body.py`: system-prompt texts and tool names of a request body;
- `cadence.py`: how steadily a key's requests arrive;
- `classify.py`: the decision, with its rule id and rules version.
"""
from gateway.policy.cadence import CadenceSummary, CadenceTracker
from gateway.policy.classify import Classification, classify
from gateway.policy.rules import PolicyRules, load_policy_rules

__all__ = ["CadenceSummary", "CadenceTracker", "Classification", "PolicyRules", "classify", "load_policy_rules"]
