"""The usage-policy agent: `tokenplan.policy` -> the pure fold -> facts, key status, table.

Low volume (one record per non-coding request, and operator reinstatements), so one
record is one unit: its facts and the key's status are sent (deterministic ids, so a
redelivery re-sends the same ones) before the key's state and the partition's next
offset are written to the `key-policy` table (changelog: a restarted worker recovers
every suspension). A record below the stored next offset was applied already: skipped.
"""
from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError

from schemas.policy import POLICY_INPUT_ADAPTER, KeyReinstated, KeyStatusRecord, PolicyViolation
from schemas.topics import KEY_STATUS, POLICY_FACTS, REJECTED
from streams.ledger.usage_policy import KeyPolicy, apply, decode_key_policy, encode_key_policy
from streams.processing.records import Source, dead_letter
from streams.worker.app import Wiring
from streams.worker.metrics import WorkerMetrics

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _watermark_key(partition: int) -> bytes:
    return f"p:{partition}".encode()


def key_status(state: KeyPolicy, event: PolicyViolation | KeyReinstated, reason: str) -> KeyStatusRecord:
    return KeyStatusRecord(key_id=state.key_id, account_id=state.account_id,
                           status="suspended" if state.suspended else "active", changed_at=event.occurred_at,
                           cause_event_id=event.event_id, reason=reason)


class PolicyApplier:
    """Applies one policy record at a time to the `key-policy` table."""

    def __init__(self, wiring: Wiring, metrics: WorkerMetrics | None = None) -> None:
        self.wiring = wiring
        self.table = wiring.policy_table
        self.applied = 0
        self.metrics = metrics if metrics is not None else WorkerMetrics.for_settings(wiring.settings)

    async def apply_record(self, raw: bytes, source: Source) -> None:
        table = self.table
        if source.offset < int(table.get(_watermark_key(source.partition), b"0")):
            return  # applied before a restart or a rebalance
        rejected = None
        try:
            event = POLICY_INPUT_ADAPTER.validate_json(raw)
        except ValidationError as error:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
            rejected = "invalid_policy_event"
            await self._send(REJECTED, None, dead_letter(raw, rejected, detail, source, None))
        else:
            await self._apply(event)
        table[_watermark_key(source.partition)] = str(source.offset + 1).encode()
        self.applied += 1
        self.metrics.count_policy(rejected)

    async def _apply(self, event: PolicyViolation | KeyReinstated) -> None:
        key = event.key_id.encode()
        stored = self.table.get(key)
        state = decode_key_policy(orjson.loads(stored)) if stored is not None else None
        new, facts, changed = apply(state, event, self.wiring.settings.policy)
        for fact in facts:
            await self._send(POLICY_FACTS, event.account_id.encode(), fact.model_dump_json().encode())
            logger.info("%s: key %s of %s (%d non-coding requests)", fact.type, fact.key_id, fact.account_id,
                        fact.violations)
        if changed:
            reason = facts[-1].message if facts else ""
            await self._send(KEY_STATUS, key, key_status(new, event, reason).model_dump_json().encode())
        self.table[key] = orjson.dumps(encode_key_policy(new))

    async def _send(self, short_topic: str, key: bytes | None, value: bytes) -> None:
        await self.wiring.out_topics[short_topic].send(key=key, value=value)
        # flush: the fact and status are durable before the state that remembers them
        await self.wiring.app.producer.flush()


def register(wiring: Wiring, metrics: WorkerMetrics | None = None) -> PolicyApplier:
    """Add the `usage_policy` agent to the app."""
    applier = PolicyApplier(wiring, metrics)

    async def usage_policy(stream) -> None:
        async for event in stream.events():
            message = event.message
            await applier.apply_record(event.value, Source(message.topic, message.partition, message.offset))

    wiring.app.agent(wiring.policy_topic, concurrency=1, name="usage_policy")(usage_policy)
    return applier
