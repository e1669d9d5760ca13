"""The stream glue without Kafka: one ledger-log record in, records to publish out."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from schemas import topics
from streams.agents.processor import DictStore, Processor
from streams.agents.records import AccountRecord, LogPosition, Source
from streams.ledger import Limits, load_catalog
from tests.streams import events as ev

DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)
NOW = DAY + timedelta(hours=12)


@pytest.fixture
def processor() -> Processor:
    return Processor(load_catalog(), Limits())


class Log:
    """Feeds events as consecutive ledger-log records of one partition."""

    def __init__(self, processor: Processor, store: DictStore | None = None, partition: int = 0) -> None:
        self.processor, self.store, self.partition, self.offset = processor, store or DictStore(), partition, 0

    def feed(self, event: dict | bytes, key: bytes | None = None, offset: int | None = None, now: datetime = NOW):
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        if key is None and isinstance(event, dict) and event.get("account_id"):
            key = event["account_id"].encode()
        position = self.offset if offset is None else offset
        self.offset = max(self.offset, position + 1)
        return self.processor.process(raw, key, LogPosition(self.partition, position),
                                      Source(topics.USAGE, 3, 100 + position), self.store, now)


def by_topic(emitted, topic):
    return [orjson.loads(emit.value) for emit in emitted if emit.topic == topic]


def test_a_charge_emits_balance_changed_and_status_only_on_transitions(processor):
    log = Log(processor)
    first = log.feed(ev.purchase("a", DAY))
    assert [s["status"] for s in by_topic(first, topics.QUOTA_STATUS)] == ["active"]
    charge = log.feed(ev.usage("a", DAY + timedelta(hours=1), miss=10))
    assert by_topic(charge, topics.QUOTA_STATUS) == []  # still active: no status record
    [change] = by_topic(charge, topics.BALANCE_CHANGED)
    assert change["credits_charged"] == "1000" and change["credits_remaining"] == "4099999000"
    record = log.store.get("a")
    assert record.log == LogPosition(0, 1) and record.source == Source(topics.USAGE, 3, 101)


def test_a_redelivered_record_changes_nothing_and_republishes_status(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    usage = ev.usage("a", DAY + timedelta(hours=1), miss=10)
    log.feed(usage)
    again = log.feed(usage, offset=1)
    assert by_topic(again, topics.BALANCE_CHANGED) == []
    assert [s["credits_used"] for s in by_topic(again, topics.QUOTA_STATUS)] == ["1000"]
    # A gateway retry (new offset, same event_id) is a no-op too.
    retry = log.feed(usage)
    assert retry == [] and log.store.get("a").state.to_dict() == log.store.get("a").state.to_dict()


def test_exhaustion_once_then_restored_by_upgrade(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    emitted = []
    for hour in (1, 2, 3):
        emitted += log.feed(ev.usage("a", DAY + timedelta(hours=hour), model="mimo-v2.5-pro", miss=10_000_000))
    assert [f["type"] for f in by_topic(emitted, topics.QUOTA_EXHAUSTED)] == ["quota.exhausted"]
    assert [s["allowed"] for s in by_topic(emitted, topics.QUOTA_STATUS)] == [False]
    restored = log.feed(ev.upgrade("a", DAY + timedelta(hours=4), "max"))
    assert [f["type"] for f in by_topic(restored, topics.QUOTA_EXHAUSTED)] == ["quota.restored"]
    assert [s["allowed"] for s in by_topic(restored, topics.QUOTA_STATUS)] == [True]


def test_bad_input_becomes_a_dead_letter_with_its_source(processor):
    log = Log(processor)
    [letter] = by_topic(log.feed(b"\xff\xfe", key=b"a"), topics.REJECTED)
    assert letter["reason"] == "invalid_json"
    assert base64.b64decode(letter["payload"]) == b"\xff\xfe" and letter["payload_encoding"] == "base64"
    assert letter["source"] == {"topic": topics.USAGE, "partition": 3, "offset": 100}
    [mismatch] = by_topic(log.feed(ev.purchase("a", DAY), key=b"b"), topics.REJECTED)
    assert mismatch["reason"] == "key_mismatch"
    [outside] = by_topic(log.feed(ev.usage("nobody", DAY, miss=1)), topics.REJECTED)
    assert outside["reason"] == "usage_outside_package"


def test_a_secret_key_never_reaches_the_dead_letter(processor):
    log = Log(processor)
    event = ev.usage("a", DAY, miss=1)
    event["key_id"] = "tp-abcdefgh12345678"
    emitted = log.feed(event)
    [letter] = by_topic(emitted, topics.REJECTED)
    assert letter["reason"] == "secret_in_event"
    assert all(b"tp-abcdefgh12345678" not in emit.value for emit in emitted)


def test_a_global_refresh_applies_once_per_partition(processor):
    log = Log(processor)
    for account_id in ("a", "b"):
        log.feed(ev.purchase(account_id, DAY))
        log.feed(ev.usage(account_id, DAY + timedelta(hours=1), miss=10))
    refresh = ev.refresh(DAY + timedelta(hours=2))
    emitted = log.feed(refresh, key=None)
    assert sorted(c["account_id"] for c in by_topic(emitted, topics.BALANCE_CHANGED)) == ["a", "b"]
    assert log.store.partition.global_refreshes == ["2026-06-01T02:00:00Z"]
    assert log.feed(refresh, key=None) == []  # the sequencer may forward it twice
    # A package bought later whose validity contains the refresh applies it too.
    log.feed(ev.purchase("c", DAY))
    log.feed(ev.usage("c", DAY + timedelta(hours=1), miss=10))
    view_c = processor.tick(log.store, ["c"], NOW)
    assert view_c == []  # still active, nothing to publish
    from streams.ledger import account_view
    assert account_view(log.store.get("c").state, NOW)["credits_used"] == "0"


def test_a_tick_after_the_period_publishes_expired_once(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    later = DAY + timedelta(days=40)
    [status] = by_topic(processor.tick(log.store, ["a"], later), topics.QUOTA_STATUS)
    assert status["status"] == "expired" and status["allowed"] is False
    assert processor.tick(log.store, ["a"], later) == []
    assert isinstance(log.store.get("a"), AccountRecord) and log.store.get("a").status_key[0] == "expired"


def test_records_and_status_keys_match_the_plain_serialization(processor):
    from streams.agents.processor import record_status_key, status_key, status_view
    from streams.agents.records import RECORD_FORMAT_VERSION

    log = Log(processor)
    events = [ev.purchase("a", DAY), ev.purchase("b", DAY, tier="max")]
    events += [ev.usage(account, DAY + timedelta(hours=1, minutes=n), model="mimo-v2.5-pro", miss=n * 900_000)
               for n in range(12) for account in ("a", "b")]
    events += [ev.refresh(DAY + timedelta(hours=2)), ev.upgrade("a", DAY + timedelta(hours=3), "pro"),
               ev.usage("a", DAY + timedelta(hours=4), miss=5), ev.refresh(DAY + timedelta(hours=5), "b")]
    for event in events:
        log.feed(event, key=None if event.get("account_id") is None else event["account_id"].encode())
        for account_id in ("a", "b"):
            record = log.store.get(account_id)
            if record is None:
                continue
            assert record.to_bytes() == orjson.dumps({
                "v": RECORD_FORMAT_VERSION, "state": record.state.to_dict(), "log": record.log.to_dict(),
                "source": record.source.to_dict(), "event_time": record.event_time,
                "status_key": list(record.status_key)})
            for now in (DAY - timedelta(hours=1), NOW, DAY + timedelta(days=40)):
                assert record_status_key(record, now) == status_key(status_view(record, now))
    assert record_status_key(None, NOW) == status_key(status_view(None, NOW))
    assert log.store.partition.global_refreshes == ["2026-06-01T02:00:00Z"]


def test_an_oversized_payload_is_cut_in_its_dead_letter_and_the_letter_says_so(processor):
    from streams.agents.records import DEAD_LETTER_PAYLOAD_BYTES_MAX

    log = Log(processor)
    huge = b'{"type": "usage", "note": "' + "é".encode() * 300_000 + b'"}'  # 600 KB of 2-byte characters
    [letter] = by_topic(log.feed(huge, key=b"a"), topics.REJECTED)
    assert letter["reason"] == "event_too_large"
    assert letter["payload_truncated"] is True and letter["payload_bytes"] == len(huge)
    assert letter["payload_encoding"] == "utf-8"  # the cut did not split a character
    assert len(letter["payload"].encode()) <= DEAD_LETTER_PAYLOAD_BYTES_MAX
    assert huge.decode().startswith(letter["payload"])
    [small] = by_topic(log.feed(b"\xff\xfe", key=b"a"), topics.REJECTED)
    assert "payload_truncated" not in small
