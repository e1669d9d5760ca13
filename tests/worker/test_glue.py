"""The worker's glue, in process (no broker): the composition root, the sequencer's routing
and batching, the clock tick, the web decisions, the runtime's ownership of partitions."""
from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.status import QuotaStatus
from streams.config import Settings
from streams.ledger import Limits, load_catalog
from streams.processing.batch_record import decode_record
from streams.processing.processor import Processor
from streams.processing.state_store import PartitionState, account_key
from streams.worker.applier import tick
from streams.worker.main import build
from streams.worker.runtime import PartitionRuntime, WorkerRuntime
from streams.worker.sequencer import Batches, forward, is_global_refresh, routing_key
from streams.worker.web import admin_refusal, lookup_body, read_account, refresh_event
from tests.processing.test_processor import DAY, NOW, Log
from tests.support import events as ev

SETTINGS = Settings.from_env({"TOKENPLAN_TOPIC_PREFIX": "glue.", "TOKENPLAN_APP_ID": "glue"})


def test_build_wires_every_part_without_connecting():
    worker = build(SETTINGS)
    app = worker.wiring.app
    assert list(app.agents) == ["apply_ledger_log", "usage_policy"]
    assert {"/health", "/accounts/{account_id}/quota", "/admin/refresh"} <= set(app.web.views)
    names = {spec.name for spec in worker.wiring.topic_specs()}
    assert {"glue.usage", "glue.plans", "glue.ledger-log", "glue.quota-status", "glue-accounts-changelog"} <= names


def test_routing_key_prefers_the_message_key_then_the_payloads_account():
    assert routing_key(b"k", b"{}") == b"k"
    assert routing_key(None, b'{"account_id": "a"}') == b"a"
    assert routing_key(None, b"not json") is None and routing_key(None, b'[1]') is None
    assert is_global_refresh(None, b'{"type": "quota.refreshed", "occurred_at": "x"}')
    assert not is_global_refresh(b"a", b'{"type": "quota.refreshed"}')


def _record(offset: int, key: bytes | None, value: bytes, topic: str = "glue.usage") -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key or b""), len(value), [])


def test_forward_packs_one_partitions_events_in_order_and_broadcasts_global_refreshes():
    batches = Batches(partitions=4, events_max=3, bytes_max=1 << 20)
    for offset in range(5):
        forward(_record(offset, b"acct", b'{"n": %d}' % offset), False, batches)
    forward(_record(9, None, b'{"type": "quota.refreshed"}', "glue.plans"), True, batches)
    closed = batches.close()
    acct = [events for _, events in closed if events[0].key == b"acct"]
    assert [[e.offset for e in events] for events in acct] == [[0, 1, 2], [3, 4, 9]]
    assert sum(1 for _, events in closed for e in events if e.offset == 9) == 4  # every partition
    partition, events = closed[0]
    from streams.processing.batch_record import encode_batch
    assert decode_record(encode_batch(events), None, [("tokenplan-format", b"2")]) == events


def test_the_first_tick_indexes_the_partition_and_publishes_expiry_once():
    processor = Processor(load_catalog(), Limits())
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    runtime = PartitionRuntime(records=None)  # no cache needed here
    later = DAY + timedelta(days=40)
    state = PartitionState(log.backend, 0, processor.limits, None, None)
    [status] = [orjson.loads(e.value) for e in tick(processor, state, runtime, later) if e.topic == topics.QUOTA_STATUS]
    assert status["status"] == "expired" and runtime.expiry.is_built
    log.backend.write(state.finish())
    assert tick(processor, PartitionState(log.backend, 0, processor.limits, None, None), runtime, later) == []


def test_admin_refusal_and_refresh_requests():
    assert admin_refusal("", "Bearer x")[0] == 403
    assert admin_refusal("secret", "Bearer wrong")[0] == 401
    assert admin_refusal("secret", "Bearer secret") is None
    event, error = refresh_event(b'{"occurred_at": "2026-05-27T00:00:00+08:00"}', Limits())
    assert error is None and event["type"] == "quota.refreshed" and "account_id" not in event
    assert refresh_event(b"nope", Limits())[1]["reason"] == "body must be JSON"
    assert refresh_event(b'{"occurred_at": "yesterday"}', Limits())[1]["reason"] == "invalid_timestamp"


def test_lookup_body_follows_the_status_contract():
    processor = Processor(load_catalog(), Limits())
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    body = lookup_body(log.get("a"), "a", NOW, SETTINGS)
    assert QuotaStatus.model_validate(body).served_by == SETTINGS.advertised_url
    assert QuotaStatus.model_validate(lookup_body(None, "b", NOW, SETTINGS)).status == "none"


def test_the_runtime_drops_revoked_partitions_but_keeps_their_unit_in_flight():
    runtime = WorkerRuntime(SETTINGS)
    first = runtime.partition(3)
    runtime.in_flight[3] = object()
    runtime.revoke([3])
    assert runtime.known(3) is None and runtime.partition(3) is not first and 3 in runtime.in_flight
    assert runtime.records_per_partition == SETTINGS.record_cache_max // SETTINGS.partitions


def test_a_reinstatement_needs_a_key_an_account_and_a_reason():
    from datetime import datetime, timezone

    from streams.worker.web import reinstate_event
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    event, error = reinstate_event(b'{"key_id": "key_1", "account_id": "a", "reason": "appeal accepted"}', now)
    assert error is None and event["type"] == "key.reinstated" and event["occurred_at"] == "2026-12-02T12:00:00Z"
    _, error = reinstate_event(b'{"key_id": "key_1", "account_id": "a"}', now)
    assert error["reason"] == "invalid_reinstatement" and "reason" in error["detail"]
    assert reinstate_event(b"[]", now)[1]["reason"] == "body must be a JSON object"


def test_a_lookup_answers_from_the_unit_in_flight_before_it_is_durable():
    """What a unit applied is answered at once (its ledger-log records are durable and
    re-applying them decides the same); the cache keeps the durable record until then."""
    wiring = build(SETTINGS).wiring
    processor = Processor(load_catalog(), Limits())
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    durable = log.get("a")
    in_flight = log.state(log.offset)
    processor.process_record(orjson.dumps(ev.usage("a", DAY + timedelta(hours=1), miss=10)), b"a", [], log.offset,
                             in_flight, NOW)
    runtime = WorkerRuntime(SETTINGS)
    partition = runtime.partition(0)
    partition.records.put(account_key("a"), durable)
    assert read_account(wiring, runtime, "a", 0) is durable
    partition.applied = in_flight.applied_records()
    applied = read_account(wiring, runtime, "a", 0)
    assert applied.state.packages[-1].used_micro == durable.state.packages[-1].used_micro + 1_000_000_000
    assert partition.records.get(account_key("a")) is durable, "the cache holds only what is durable"
