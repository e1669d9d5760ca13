"""Every table `tokenplan projector` writes, in one place (the dashboard reads these).

Each column's `comment` is its documentation (PostgreSQL also stores it). Decimals are
`ExactDecimal` (exact on every database, see `projections.types`), instants
`UtcDateTime` (aware UTC). Hours are UTC hour starts (`hour_start`): a day bucket is
the sum of its 24 hours. "Off-peak" is UTC [16:00, 24:00) (Beijing 00:00-08:00), where
the ledger charges 0.8x.

Two kinds of tables:
- **read models**, a pure function of the out-topics: dropping the database and
  projecting again from offset 0 gives the same rows (tested);
- **operational state** (`alerts.published_at`, `webhook_deliveries`): what was sent
  where and when. Not part of that identity.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text)

from projections.types import ExactDecimal, UtcDateTime

__all__ = ["metadata", "READ_MODELS", "OPERATIONAL"]

metadata = MetaData()

ID = 200  # event ids are at most 128 characters (the contract); derived ids add a prefix
NAME = 128


def _usage_columns() -> list[Column]:
    """The measures shared by the account and fleet usage tables."""
    return [
        Column("requests", BigInteger, nullable=False, comment="charges (usage events applied) in the hour"),
        Column("input_cache_hit_tokens", BigInteger, nullable=False, comment="input tokens served from the cache"),
        Column("input_cache_miss_tokens", BigInteger, nullable=False, comment="input tokens not in the cache"),
        Column("output_tokens", BigInteger, nullable=False, comment="generated tokens"),
        Column("credits", ExactDecimal, nullable=False,
               comment="credits charged (after the off-peak 0.8x); 0 for free models"),
        Column("credits_offpeak", ExactDecimal, nullable=False,
               comment="the part of credits charged in off-peak hours (after the 0.8x)"),
        Column("credits_saved", ExactDecimal, nullable=False,
               comment="credits the 0.8x coefficient saved (what peak would have cost minus credits)"),
    ]


projector_offsets = Table(
    "projector_offsets", metadata,
    Column("topic", String(NAME), primary_key=True, comment="full topic name (with the prefix)"),
    Column("partition", Integer, primary_key=True, comment="Kafka partition"),
    Column("next_offset", BigInteger, nullable=False,
           comment="offset of the next record to fold; written in the transaction of the rows"),
    comment="where the projector resumes: it seeks here at start, never to Kafka's committed offsets",
)

applied_events = Table(
    "applied_events", metadata,
    Column("event_id", String(ID), primary_key=True,
           comment="the fact's event_id (dead letters: dl- + a hash of reason, event and source)"),
    Column("topic", String(NAME), nullable=False, comment="topic the fact was first read from"),
    Column("partition", Integer, nullable=False, comment="its partition"),
    Column("offset", BigInteger, nullable=False, comment="its offset"),
    comment="facts already folded: a redelivered fact (same id, any offset) changes nothing",
)

usage_hourly = Table(
    "usage_hourly", metadata,
    Column("account_id", String(NAME), primary_key=True, comment="the account charged"),
    Column("model", String(NAME), primary_key=True,
           comment="model as the gateway reported it; 'unknown' for facts without a usage object"),
    Column("hour_start", UtcDateTime, primary_key=True, comment="UTC hour of the usage's occurred_at"),
    *_usage_columns(),
    comment="usage per account x model x hour (from balance.changed caused by usage)",
)

fleet_usage_hourly = Table(
    "fleet_usage_hourly", metadata,
    Column("cluster", String(NAME), primary_key=True, comment="gateway cluster (cn, sgp, ams); 'unknown' if absent"),
    Column("protocol", String(NAME), primary_key=True, comment="openai or anthropic; 'unknown' if absent"),
    Column("hour_start", UtcDateTime, primary_key=True, comment="UTC hour of the usage's occurred_at"),
    *_usage_columns(),
    comment="the same measures per cluster x protocol x hour, all accounts",
)

balance_timeline = Table(
    "balance_timeline", metadata,
    Column("event_id", String(ID), primary_key=True, comment="the balance.changed fact's id"),
    Column("account_id", String(NAME), nullable=False, comment="the account"),
    Column("package_valid_from", UtcDateTime, nullable=False, comment="start of the package period it is about"),
    Column("at", UtcDateTime, nullable=False, comment="occurred_at of the cause"),
    Column("cause_type", String(64), nullable=False, comment="usage, plan.purchased, plan.upgraded, plan.renewed, quota.refreshed"),
    Column("cause_event_id", String(ID), nullable=False, comment="the input event that caused it"),
    Column("credits_charged", ExactDecimal, nullable=False, comment="credits this cause charged (0 for package changes)"),
    Column("credits_used", ExactDecimal, nullable=False, comment="used credits of the period after it"),
    Column("credits_remaining", ExactDecimal, nullable=False, comment="remaining credits after it (never negative)"),
    Column("credits_limit", ExactDecimal, nullable=False, comment="the period's pool"),
    Column("fact_partition", Integer, nullable=False, comment="partition of balance-changed it was read from"),
    Column("fact_offset", BigInteger, nullable=False, comment="its offset (orders facts of one account)"),
    Index("ix_balance_timeline_account", "account_id", "package_valid_from", "fact_offset"),
    comment="every balance.changed: the balance of a package period over time",
)

package_history = Table(
    "package_history", metadata,
    Column("account_id", String(NAME), primary_key=True, comment="the account"),
    Column("valid_from", UtcDateTime, primary_key=True, comment="start of the package period"),
    Column("valid_until", UtcDateTime, nullable=False, comment="end (exclusive); an upgrade moves it to the upgrade's instant"),
    Column("tier", String(32), nullable=False, comment="lite, standard, pro, max"),
    Column("period", String(32), nullable=False, comment="monthly or annual"),
    Column("credits_limit", ExactDecimal, nullable=False, comment="the period's pool"),
    Column("credits_used", ExactDecimal, nullable=False, comment="used credits after the latest fact about it"),
    Column("credits_remaining", ExactDecimal, nullable=False, comment="remaining credits after the latest fact"),
    Column("exhausted", Boolean, nullable=False, comment="blocked: quota.exhausted seen and not yet restored"),
    Column("opened_by", String(64), comment="cause_type of the fact that carried the payment (purchase, upgrade, renewal)"),
    Column("opened_event_id", String(ID), comment="that cause's event_id (the invoice line's reference)"),
    Column("paid_at", UtcDateTime, comment="when it was paid (the cause's occurred_at)"),
    Column("amount", ExactDecimal, comment="the amount actually paid (the invoiceable amount), in currency"),
    Column("currency", String(8), comment="ISO currency of amount"),
    Column("discount", String(64), comment="the discount applied (first_purchase, auto_renew_new, ...), or null"),
    comment="package periods with what was paid: one invoice line per paid row",
)

quota_events = Table(
    "quota_events", metadata,
    Column("event_id", String(ID), primary_key=True, comment="the quota.exhausted / quota.restored fact's id"),
    Column("account_id", String(NAME), nullable=False, comment="the account"),
    Column("type", String(32), nullable=False, comment="quota.exhausted or quota.restored"),
    Column("at", UtcDateTime, nullable=False, comment="occurred_at of the cause"),
    Column("cause_type", String(64), nullable=False, comment="what caused it (usage, a purchase, a refresh, ...)"),
    Column("cause_event_id", String(ID), nullable=False, comment="the input event that caused it"),
    Column("package_valid_from", UtcDateTime, nullable=False, comment="the package period it is about"),
    Column("tier", String(32), nullable=False, comment="that package's tier"),
    Column("credits_used", ExactDecimal, nullable=False, comment="used credits then"),
    Column("credits_remaining", ExactDecimal, comment="remaining credits (restorations only)"),
    Column("credits_limit", ExactDecimal, nullable=False, comment="the period's pool"),
    Index("ix_quota_events_at", "at"),
    comment="exhaustions and restorations (the operator's 'recently exhausted')",
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("dead_letter_id", String(ID), primary_key=True, comment="dl- + a hash of reason, event_id and source position"),
    Column("reason", String(64), nullable=False, comment="rejection reason (docs/rules.md lists them)"),
    Column("detail", Text, nullable=False, comment="the ledger's explanation (secrets redacted)"),
    Column("event_id", String(ID), comment="the rejected event's id, when it had one"),
    Column("account_id", String(NAME), comment="its account, when known"),
    Column("source_topic", String(NAME), comment="input topic it entered by"),
    Column("source_partition", Integer, comment="input partition"),
    Column("source_offset", BigInteger, comment="input offset"),
    Column("rejected_at", UtcDateTime, nullable=False, comment="timestamp of the dead-letter record in Kafka"),
    Column("rejected_partition", Integer, nullable=False, comment="partition of the rejected topic"),
    Column("rejected_offset", BigInteger, nullable=False, comment="offset in the rejected topic"),
    Index("ix_dead_letters_reason", "reason", "rejected_at"),
    comment="each dead letter (without its payload, which stays in Kafka)",
)

dead_letter_reasons = Table(
    "dead_letter_reasons", metadata,
    Column("reason", String(64), primary_key=True, comment="rejection reason"),
    Column("count", BigInteger, nullable=False, comment="dead letters with this reason"),
    Column("latest_at", UtcDateTime, nullable=False, comment="rejected_at of the latest one"),
    Column("latest_partition", Integer, nullable=False, comment="its partition of the rejected topic (ties)"),
    Column("latest_offset", BigInteger, nullable=False, comment="its offset (ties)"),
    Column("latest_dead_letter_id", String(ID), nullable=False, comment="the latest one (dead_letters row)"),
    Column("latest_event_id", String(ID), comment="its event_id"),
    Column("latest_account_id", String(NAME), comment="its account"),
    Column("latest_detail", Text, nullable=False, comment="its detail"),
    comment="dead letters by reason: count and latest (latest = greatest record timestamp, then partition, offset)",
)

quota_status = Table(
    "quota_status", metadata,
    Column("account_id", String(NAME), primary_key=True, comment="the account"),
    Column("status", String(16), nullable=False, comment="active, exhausted, expired, none"),
    Column("allowed", Boolean, nullable=False, comment="whether gateways serve it"),
    Column("tier", String(32), comment="current package tier"),
    Column("period", String(32), comment="monthly or annual"),
    Column("credits_limit", ExactDecimal, comment="pool of the current period"),
    Column("credits_used", ExactDecimal, comment="used credits"),
    Column("credits_remaining", ExactDecimal, comment="remaining credits as of this record (exact within a 1 % step; see package_history)"),
    Column("valid_from", UtcDateTime, comment="current period start"),
    Column("valid_until", UtcDateTime, comment="current period end"),
    Column("computed_at", UtcDateTime, nullable=False, comment="as_of.computed_at of the status record"),
    Column("event_time", UtcDateTime, comment="as_of.event_time: the last event applied for the account"),
    Column("status_partition", Integer, nullable=False, comment="partition of quota-status it was read from"),
    Column("status_offset", BigInteger, nullable=False, comment="its offset"),
    comment="the latest quota-status record per account: status and allowed are current; its credits are "
            "as of the last record (published on 1 % steps of the pool), package_history has the exact balance",
)

alerts = Table(
    "alerts", metadata,
    Column("alert_id", String(ID + 64), primary_key=True,
           comment="alert:{account}:{valid_from}:{threshold}[:{crossing}] (crossing >= 2 after a refresh re-armed it),"
                   " or alert:policy:{fact event id}"),
    Column("account_id", String(NAME), nullable=False, comment="the account"),
    Column("kind", String(NAME), nullable=False, comment="quota.threshold, policy.warning or key.suspended"),
    Column("at", UtcDateTime, nullable=False,
           comment="occurred_at of the fact that raised it (the charge that crossed, the policy fact)"),
    Column("fact_event_id", String(ID), nullable=False, comment="the balance.changed or policy fact that raised it"),
    Column("key_id", String(ID), comment="a policy alert's key (null for a threshold alert)"),
    Column("package_valid_from", UtcDateTime, comment="a threshold alert's package period"),
    Column("threshold", Integer, comment="a threshold alert's percent of the pool (80, 90, 100 by default)"),
    Column("crossing", Integer, comment="1 for the first crossing of the period, 2.. after refreshes"),
    Column("credits_used", ExactDecimal, comment="a threshold alert's used credits then"),
    Column("credits_limit", ExactDecimal, comment="a threshold alert's pool"),
    Column("body", Text, nullable=False, comment="the JSON published to tokenplan.alerts and POSTed to the webhook"),
    Column("published_at", UtcDateTime, comment="operational: when Kafka acknowledged it (null: not yet, re-sent at start)"),
    Index("ix_alerts_account", "account_id", "at"),
    comment="threshold and usage-policy alerts, decided in the fold's transaction; published after commit (at least once)",
)

alert_arms = Table(
    "alert_arms", metadata,
    Column("account_id", String(NAME), primary_key=True, comment="the account"),
    Column("package_valid_from", UtcDateTime, primary_key=True, comment="the package period"),
    Column("threshold", Integer, primary_key=True, comment="percent"),
    Column("crossings", Integer, nullable=False, comment="alerts emitted so far for this threshold and period"),
    Column("above", Boolean, nullable=False, comment="used is at or above the threshold (a refresh below re-arms it)"),
    comment="per threshold and period: whether the next crossing is a new alert",
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("alert_id", String(ID + 64), primary_key=True, comment="the alert delivered (receivers dedupe on it)"),
    Column("url", Text, nullable=False, comment="TOKENPLAN_WEBHOOK_URL when the alert was decided"),
    Column("status", String(16), nullable=False, comment="pending, delivered, failed (gave up after the attempts limit)"),
    Column("attempts", Integer, nullable=False, comment="POSTs tried"),
    Column("last_status_code", Integer, comment="HTTP status of the last attempt (null: no answer)"),
    Column("last_error", Text, comment="why the last failed attempt failed (kept after a later success: it was retried)"),
    Column("last_attempt_at", UtcDateTime, comment="when it was last tried"),
    Column("next_attempt_at", UtcDateTime, comment="when it is tried next (null when delivered or failed)"),
    Column("delivered_at", UtcDateTime, comment="when a 2xx was received"),
    Index("ix_webhook_due", "status", "next_attempt_at"),
    comment="operational: webhook delivery state per alert (the operator page shows failures)",
)

policy_events = Table(
    "policy_events", metadata,
    Column("event_id", String(ID), primary_key=True, comment="the PolicyFact's event_id ({cause}:{type})"),
    Column("account_id", String(NAME), nullable=False, comment="the key's account"),
    Column("key_id", String(NAME), nullable=False, comment="the API key it is about"),
    Column("type", String(32), nullable=False, comment="policy.warning, key.suspended or key.reinstated"),
    Column("at", UtcDateTime, nullable=False, comment="occurred_at of the cause (a violation or a reinstatement)"),
    Column("cause_event_id", String(ID), nullable=False, comment="the policy input that caused it"),
    Column("violations", Integer, nullable=False, comment="non-coding requests of the key inside the window then"),
    Column("window_s", Integer, nullable=False, comment="the policy's window, in seconds"),
    Column("rules", Text, nullable=False, comment='JSON object {rule: count} of those requests (sorted keys)'),
    Column("request_event_ids", Text, nullable=False,
           comment="JSON array of the requests' usage event ids that triggered it (as the worker listed them)"),
    Column("message", Text, nullable=False, comment="the fact's message (what the customer is told)"),
    Column("fact_partition", Integer, nullable=False, comment="partition of policy-facts it was read from"),
    Column("fact_offset", BigInteger, nullable=False, comment="its offset (orders one account's facts)"),
    Index("ix_policy_events_account", "account_id", "key_id", "fact_offset"),
    comment="every policy fact (tokenplan.policy-facts): warnings, suspensions, reinstatements",
)

policy_key_state = Table(
    "policy_key_state", metadata,
    Column("key_id", String(NAME), primary_key=True, comment="the API key"),
    Column("account_id", String(NAME), nullable=False, comment="its account"),
    Column("status", String(16), nullable=False, comment="suspended or active (after a reinstatement)"),
    Column("changed_at", UtcDateTime, nullable=False, comment="at of the fact that set it"),
    Column("event_id", String(ID), nullable=False, comment="that key.suspended / key.reinstated fact"),
    Column("message", Text, nullable=False, comment="its message"),
    Column("fact_partition", Integer, nullable=False, comment="its partition of policy-facts"),
    Column("fact_offset", BigInteger, nullable=False, comment="its offset"),
    Index("ix_policy_key_state_status", "status", "changed_at"),
    comment="per key, the latest key.suspended / key.reinstated fact (warnings change no state; "
            "a key without a row is active)",
)

policy_violations_hourly = Table(
    "policy_violations_hourly", metadata,
    Column("account_id", String(NAME), primary_key=True, comment="the key's account"),
    Column("key_id", String(NAME), primary_key=True, comment="the API key"),
    Column("rule", String(ID), primary_key=True, comment="the classification rule that matched"),
    Column("hour_start", UtcDateTime, primary_key=True, comment="UTC hour of the violation's occurred_at"),
    Column("count", BigInteger, nullable=False, comment="policy.violation events in the hour"),
    comment="non-coding requests (tokenplan.policy's policy.violation) per account x key x rule x hour",
)

policy_violations_recent = Table(
    "policy_violations_recent", metadata,
    Column("event_id", String(ID), primary_key=True, comment="the policy.violation's event_id"),
    Column("account_id", String(NAME), nullable=False, comment="the key's account"),
    Column("key_id", String(NAME), nullable=False, comment="the API key"),
    Column("at", UtcDateTime, nullable=False, comment="occurred_at of the request"),
    Column("request_event_id", String(ID), nullable=False, comment="the usage event id of the request"),
    Column("rule", String(ID), nullable=False, comment="the classification rule that matched"),
    Column("rules_version", String(100), nullable=False, comment="the gateway's rules version"),
    Column("tool", Text, comment="the tool the gateway recognised, if any"),
    Column("client", String(NAME * 4), comment="the client (User-Agent) as the gateway reported it"),
    Column("fact_partition", Integer, nullable=False, comment="partition of tokenplan.policy"),
    Column("fact_offset", BigInteger, nullable=False, comment="its offset"),
    Index("ix_policy_violations_recent_key", "key_id", "at"),
    comment="the latest violations of each key (at most projections.policy.RECENT_PER_KEY, latest = greatest "
            "at, then partition, offset, event_id)",
)

#: Pure functions of the out-topics (compared by the re-projection test).
READ_MODELS: tuple[Table, ...] = (
    projector_offsets, applied_events, usage_hourly, fleet_usage_hourly, balance_timeline, package_history,
    quota_events, dead_letters, dead_letter_reasons, quota_status, alert_arms, policy_events, policy_key_state,
    policy_violations_hourly, policy_violations_recent)
#: What was sent: depends on when Kafka and the webhook answered.
OPERATIONAL: tuple[Table, ...] = (alerts, webhook_deliveries)
