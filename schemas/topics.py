"""Topic names (short form; the runtime adds the `tokenplan.` prefix) and their keys.

Every topic is keyed by `account_id` (UTF-8) so that all topics feeding one table are
co-partitioned and a table write lands on the partition of its source event. They all
share one partition count (TOKENPLAN_PARTITIONS).
"""
from __future__ import annotations

#: Usage events from the gateways (cn, sgp, ams).
USAGE = "usage"
#: Billing events: plan.purchased, plan.upgraded, plan.renewed, quota.refreshed.
PLANS = "plans"
#: The sequenced per-account log: every input event exactly as received, in the order
#: the ledger applies it (the replay source). Headers name the input topic/partition/offset.
LEDGER_LOG = "ledger-log"
#: Clock ticks from the leader worker, one per partition per interval (expiry).
CLOCK = "clock"
#: One record per applied charge or package change (balance after it).
BALANCE_CHANGED = "balance-changed"
#: quota.exhausted (once per package period) and quota.restored, in order.
QUOTA_EXHAUSTED = "quota-exhausted"
#: Compacted: key = account, value = latest allow/deny view.
QUOTA_STATUS = "quota-status"
#: Dead letters: original payload, reason, source topic/partition/offset.
REJECTED = "rejected"
#: Compacted: key = key_id, value = the key's state (schemas.keys.KeyRecord), no secrets.
KEYS = "keys"
#: Usage-policy inputs, keyed by account_id: policy.violation (gateways), key.reinstated (admin).
POLICY = "policy"
#: policy.warning, key.suspended, key.reinstated facts (history; schemas.policy.PolicyFact).
POLICY_FACTS = "policy-facts"
#: Compacted: key = key_id, value = the key's policy state (schemas.policy.KeyStatusRecord).
KEY_STATUS = "key-status"
#: Gateway requests whose usage could not be metered (no usage, inconsistent usage):
#: recorded for audit with a named reason (schemas.gateway.UnmeteredRequest), never charged as zero.
UNMETERED = "unmetered"

ALL_INPUTS: tuple[str, ...] = (USAGE, PLANS)
ALL_OUTPUTS: tuple[str, ...] = (BALANCE_CHANGED, QUOTA_EXHAUSTED, QUOTA_STATUS, REJECTED)
#: The usage policy's outputs (its input is POLICY, outside the ledger-log: no billing effect).
POLICY_OUTPUTS: tuple[str, ...] = (POLICY_FACTS, KEY_STATUS)

#: Broker configs per topic (beyond partitions): the log is kept forever (it is the
#: history a replay proves balances from), and so are the facts (projections are rebuilt
#: from them); the status topics are compacted.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    LEDGER_LOG: {"retention.ms": "-1", "retention.bytes": "-1"},
    # The facts are history too: projections are rebuilt from offset 0 (`tokenplan projector --rebuild`).
    BALANCE_CHANGED: {"retention.ms": "-1", "retention.bytes": "-1"},
    QUOTA_EXHAUSTED: {"retention.ms": "-1", "retention.bytes": "-1"},
    REJECTED: {"retention.ms": "-1", "retention.bytes": "-1"},
    CLOCK: {"retention.ms": "3600000"},
    QUOTA_STATUS: {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
    KEYS: {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
    UNMETERED: {"retention.ms": "-1", "retention.bytes": "-1"},
    POLICY: {"retention.ms": "-1", "retention.bytes": "-1"},
    POLICY_FACTS: {"retention.ms": "-1", "retention.bytes": "-1"},
    KEY_STATUS: {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
}

#: Kafka headers the sequencer puts on ledger-log records.
HEADER_SOURCE_TOPIC = "tokenplan-source-topic"
HEADER_SOURCE_PARTITION = "tokenplan-source-partition"
HEADER_SOURCE_OFFSET = "tokenplan-source-offset"
