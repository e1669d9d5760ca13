"""Topic names (short form; the runtime adds the `tokenplan.` prefix) and their keys.

Every topic is keyed by `account_id` (UTF-8) so that all topics feeding one table are
co-partitioned and a table write lands on the partition of its source event.
"""
from __future__ import annotations

#: Usage events from the gateways (cn, sgp, ams).
USAGE = "usage"
#: Billing events: plan.purchased, plan.upgraded, plan.renewed, quota.refreshed.
PLANS = "plans"

ALL_INPUTS: tuple[str, ...] = (USAGE, PLANS)
