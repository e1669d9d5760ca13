"""The stream glue without Kafka: one ledger-log record in, records to publish out."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from schemas import topics
from streams.processing.batch_record import FORMAT_HEADER, InputEvent, encode_batch
from streams.processing.processor import LedgerHoleError, Processor
from streams.processing.records import AccountRecord, LogPosition, Source
from streams.processing.state_store import DictBackend, PartitionState
from streams.ledger import Limits, load_catalog
from tests.support import events as ev

DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)
NOW = DAY + timedelta(hours=12)


@pytest.fixture
def processor() -> Processor:
    return Processor(load_catalog(), Limits())


class Log:
    """Feeds events as consecutive ledger-log records of one partition, each a unit of work
    whose writes are committed to `backend` (as the worker makes them durable)."""

    def __init__(self, processor: Processor, backend: DictBackend | None = None, partition: int = 0) -> None:
        self.processor, self.partition, self.offset = processor, partition, 0
        self.backend = backend or DictBackend()

    def state(self, offset: int | None = None) -> PartitionState:
        return PartitionState(self.backend, self.partition, self.processor.limits, None, offset)

    def get(self, account_id: str) -> AccountRecord | None:
        return self.state().get(account_id)

    def feed(self, event: dict | bytes, key: bytes | None = None, offset: int | None = None, now: datetime = NOW,
             commit: bool = True):
        """One v1 record (the event's bytes, its source in headers)."""
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        if key is None and isinstance(event, dict) and event.get("account_id"):
            key = event["account_id"].encode()
        position = self.offset if offset is None else offset
        headers = [(topics.HEADER_SOURCE_TOPIC, topics.USAGE.encode()), (topics.HEADER_SOURCE_PARTITION, b"3"),
                   (topics.HEADER_SOURCE_OFFSET, str(100 + position).encode())]
        return self._apply(raw, key, headers, position, now, commit)

    def feed_batch(self, events: list[dict | bytes], offset: int | None = None, now: datetime = NOW,
                   commit: bool = True):
        """One v2 record holding `events` (keyed by account)."""
        entries = []
        for index, event in enumerate(events):
            raw = event if isinstance(event, bytes) else orjson.dumps(event)
            key = event["account_id"].encode() if isinstance(event, dict) and event.get("account_id") else None
            entries.append(InputEvent(topics.USAGE, 3, 1000 + index, key, raw))
        position = self.offset if offset is None else offset
        return self._apply(encode_batch(entries), None, [(FORMAT_HEADER, b"2")], position, now, commit)

    def _apply(self, value, key, headers, position, now, commit):
        state = self.state(position)
        emitted = self.processor.process_record(value, key, headers, position, state, now)
        writes = state.finish()
        if commit:
            self.backend.write(writes)
        self.offset = max(self.offset, position + 1)
        self.last_writes = writes
        return emitted

    def partition_record(self):
        return self.state().get_partition()


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
    record = log.get("a")
    assert record.log == LogPosition(0, 1) and record.source == Source(topics.USAGE, 3, 101)


def test_a_redelivered_record_changes_nothing(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    usage = ev.usage("a", DAY + timedelta(hours=1), miss=10)
    log.feed(usage)
    before = log.get("a").state.to_dict()
    assert log.feed(usage, offset=1) == []  # at or below the partition's watermark
    # A gateway retry (new offset, same event_id) is a no-op too.
    retry = log.feed(usage)
    assert retry == [] and log.get("a").state.to_dict() == before


def test_a_unit_headed_by_redelivered_records_still_knows_their_ids(processor):
    """faust's resume-before-seek race (after recovery) delivers records the worker already
    applied; the applier's next unit then starts with them, followed by fresh records. A
    fresh record holding a gateway retry of an event of the redelivered ones is charged
    once: the memory they wrote is durable, not a torn try's (the kill -9 soak's seed
    1797884949 over-charged 7 accounts this way)."""
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))  # offset 0
    first = ev.usage("a", DAY + timedelta(hours=1), miss=10)
    log.feed_batch([first, ev.usage("a", DAY + timedelta(hours=2), miss=20)])  # offset 1
    log.feed_batch([ev.usage("a", DAY + timedelta(hours=3), miss=30)])  # offset 2
    before = log.get("a").state.to_dict()
    batch = lambda events: (encode_batch([InputEvent(topics.USAGE, 3, 1000 + i, b"a", orjson.dumps(e))  # noqa: E731
                                          for i, e in enumerate(events)]), None, [(FORMAT_HEADER, b"2")])
    redelivered = [(*batch([first, ev.usage("a", DAY + timedelta(hours=2), miss=20)]), 1),
                   (*batch([ev.usage("a", DAY + timedelta(hours=3), miss=30)]), 2)]
    fresh = (*batch([first]), 3)  # the retry arrives in the next record
    state = log.state(1)  # the unit starts at its first record: a redelivered one
    emitted = processor.process_records(redelivered + [fresh], state, NOW)
    log.backend.write(state.finish())
    assert by_topic(emitted, topics.BALANCE_CHANGED) == [], "the retry is no charge"
    assert log.get("a").state.to_dict() == before
    assert log.partition_record().next_offset == 4


def test_a_retry_after_thousands_of_events_is_charged_once(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY, tier="max"))
    first = ev.usage("a", DAY + timedelta(minutes=1), miss=10)
    log.feed(first)
    for batch in range(30):  # 3,000 later events of the same account, 100 per record
        log.feed_batch([ev.usage("a", DAY + timedelta(hours=1, seconds=batch * 100 + n), hit=1) for n in range(100)])
    used = log.get("a").state.packages[-1].used_micro
    retried = log.feed_batch([first, first])
    assert by_topic(retried, topics.BALANCE_CHANGED) == [] and by_topic(retried, topics.REJECTED) == []
    assert log.get("a").state.packages[-1].used_micro == used


def test_a_hole_in_the_log_is_refused(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    with pytest.raises(LedgerHoleError):
        log.feed(ev.usage("a", DAY + timedelta(hours=1), miss=10), offset=5)


def test_a_torn_write_reapplied_charges_once(processor):
    """A crash after a prefix of a record's writes reached the changelog: applying the record
    again from the recovered state counts every event of it exactly once."""
    full, torn = Log(processor), Log(processor)
    purchases = [ev.purchase("a", DAY), ev.purchase("b", DAY)]
    for log in (full, torn):
        for purchase in purchases:
            log.feed(purchase)
    batch = [ev.usage(account, DAY + timedelta(hours=1, minutes=n), miss=10 + n) for n in range(5) for account in "ab"]
    full.feed_batch(batch)
    torn.feed_batch(batch, commit=False)
    ordered = torn.last_writes.ordered()
    for cut in range(1, len(ordered)):  # every prefix of the changelog run
        copy = Log(processor, DictBackend())
        copy.backend.data, copy.offset = dict(torn.backend.data), torn.offset - 1
        copy.backend._groups = {group: set(keys) for group, keys in torn.backend._groups.items()}
        from streams.processing.state_store import Writes
        copy.backend.write(Writes(ordered[:cut]))
        copy.feed_batch(batch, offset=2)
        for account in "ab":
            assert copy.get(account).state.to_dict() == full.get(account).state.to_dict(), cut


def test_a_torn_unit_of_several_records_reapplied_in_other_cuts_charges_once(processor):
    """The worker may apply consecutive records as one unit; after a crash it may cut them
    differently. Every prefix of the torn unit's writes, then the records again in two units,
    gives exactly the state of one clean unit."""
    purchases = [ev.purchase("a", DAY), ev.purchase("b", DAY), ev.purchase("c", DAY)]
    records = [[ev.usage("a", DAY + timedelta(hours=1), miss=1), ev.usage("b", DAY + timedelta(hours=1), miss=2)],
               [ev.usage("c", DAY + timedelta(hours=2), miss=3), ev.usage("b", DAY + timedelta(hours=2), miss=4)],
               [ev.usage("a", DAY + timedelta(hours=3), miss=5)]]
    records[2].append(records[1][1])  # a gateway retry inside the unit: charged once
    records[2].append(ev.refresh(DAY + timedelta(hours=1, minutes=30), "b"))  # reads b's entries mid-unit

    def unit(log, batches, first, commit=True):
        values = [(encode_batch([InputEvent(topics.USAGE, 3, 1000 + i, e["account_id"].encode(), orjson.dumps(e))
                                 for i, e in enumerate(batch)]), None, [(FORMAT_HEADER, b"2")], first + n)
                  for n, batch in enumerate(batches)]
        state = log.state(first)
        processor.process_records(values, state, NOW)
        writes = state.finish()
        if commit:
            log.backend.write(writes)
        return writes

    refresh_b = ev.refresh(DAY + timedelta(hours=1, minutes=45), "b")
    full, torn = Log(processor), Log(processor)
    for log in (full, torn):
        for purchase in purchases:
            log.feed(purchase)
    unit(full, records, 3)
    ordered = unit(torn, records, 3, commit=False).ordered()
    assert full.get("b").state.packages[0].used_micro == 4 * 100 * 10**6  # after the refresh; the retry once
    from streams.processing.state_store import Writes
    for cut in range(len(ordered) + 1):
        copy = Log(processor, DictBackend())
        for key, value in torn.backend.data.items():
            copy.backend.write(Writes([(key, value)]))
        copy.backend.write(Writes(ordered[:cut]))
        unit(copy, records[:1], 3)
        unit(copy, records[1:], 4)
        for log in (copy, full):  # a later refresh cutting b's usage again: none twice, none lost
            log.offset = 6
            log.feed(refresh_b)
        for account in "abc":
            assert copy.get(account).state.to_dict() == full.get(account).state.to_dict(), (cut, account)


def test_usage_too_late_against_the_partitions_high_water_mark(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY, tier="max", period="annual"))
    log.feed(ev.usage("a", DAY + timedelta(days=60), miss=1))
    [letter] = by_topic(log.feed(ev.usage("a", DAY + timedelta(days=20), miss=1)), topics.REJECTED)
    assert letter["reason"] == "usage_too_late"
    assert log.partition_record().high_water == "2026-07-31T00:00:00Z"


def test_exhaustion_once_then_restored_by_upgrade(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    emitted = []
    for hour in (1, 2, 3):
        emitted += log.feed(ev.usage("a", DAY + timedelta(hours=hour), model="mimo-v2.5-pro", miss=10_000_000))
    assert [f["type"] for f in by_topic(emitted, topics.QUOTA_EXHAUSTED)] == ["quota.exhausted"]
    # the first usage crossed credit steps (a status with the new remaining credits), the second exhausted
    assert [s["allowed"] for s in by_topic(emitted, topics.QUOTA_STATUS)] == [True, False]
    restored = log.feed(ev.upgrade("a", DAY + timedelta(hours=4), "max"))
    assert [f["type"] for f in by_topic(restored, topics.QUOTA_EXHAUSTED)] == ["quota.restored"]
    assert [s["allowed"] for s in by_topic(restored, topics.QUOTA_STATUS)] == [True]


def test_status_records_follow_the_credits_by_steps_and_exactly_near_the_end(processor):
    """1 % steps of the pool far from exhaustion; every change in the last 5 %: gateways
    then hold the remaining credits exactly where their in-flight count needs them."""
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))  # lite: 4.1e9 credits; 1 % = 41e6 = 410,000 miss tokens of mimo-v2.5
    statuses = []
    for minute in range(40):  # 40 x 100,000 miss tokens x 100 = 10 % of the pool: ~10 steps
        statuses += by_topic(log.feed(ev.usage("a", DAY + timedelta(minutes=minute), miss=100_000)),
                             topics.QUOTA_STATUS)
    assert 9 <= len(statuses) <= 11
    log.feed(ev.usage("a", DAY + timedelta(hours=2), model="mimo-v2-pro", output=1_760_000))  # ~98 % used
    near = []
    for minute in range(5):
        near += by_topic(log.feed(ev.usage("a", DAY + timedelta(hours=3, minutes=minute), miss=1_000)),
                         topics.QUOTA_STATUS)
    assert len(near) == 5, "every change near exhaustion is published"
    assert len({s["credits_remaining"] for s in near}) == 5


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
    assert log.partition_record().global_refreshes == ["2026-06-01T02:00:00Z"]
    assert log.feed(refresh, key=None) == []  # the sequencer may forward it twice
    # A package bought later whose validity contains the refresh applies it too.
    log.feed(ev.purchase("c", DAY))
    log.feed(ev.usage("c", DAY + timedelta(hours=1), miss=10))
    view_c = processor.tick(log.state(), ["c"], NOW)
    assert view_c == []  # still active, nothing to publish
    from streams.ledger import account_view
    assert account_view(log.get("c").state, NOW)["credits_used"] == "0"


def test_a_tick_after_the_period_publishes_expired_once(processor):
    log = Log(processor)
    log.feed(ev.purchase("a", DAY))
    later = DAY + timedelta(days=40)
    state = log.state()
    [status] = by_topic(processor.tick(state, ["a"], later), topics.QUOTA_STATUS)
    assert status["status"] == "expired" and status["allowed"] is False
    log.backend.write(state.finish())
    assert processor.tick(log.state(), ["a"], later) == []
    assert isinstance(log.get("a"), AccountRecord) and log.get("a").status_key[0] == "expired"


def test_records_round_trip_and_status_keys_match_the_plain_views(processor):
    from streams.processing.processor import record_status_key, status_key, status_view

    log = Log(processor)
    events = [ev.purchase("a", DAY), ev.purchase("b", DAY, tier="max")]
    events += [ev.usage(account, DAY + timedelta(hours=1, minutes=n), model="mimo-v2.5-pro", miss=n * 900_000)
               for n in range(12) for account in ("a", "b")]
    events += [ev.refresh(DAY + timedelta(hours=2)), ev.upgrade("a", DAY + timedelta(hours=3), "pro"),
               ev.usage("a", DAY + timedelta(hours=4), miss=5), ev.refresh(DAY + timedelta(hours=5), "b")]
    for event in events:
        log.feed(event, key=None if event.get("account_id") is None else event["account_id"].encode())
        for account_id in ("a", "b"):
            record = log.get(account_id)
            if record is None:
                continue
            again = AccountRecord.from_bytes(record.to_bytes(), processor.limits)
            assert again.to_bytes() == record.to_bytes() and len(record.to_bytes()) < 1024
            for now in (DAY - timedelta(hours=1), NOW, DAY + timedelta(days=40)):
                assert record_status_key(record, now) == status_key(status_view(record, now))
    assert record_status_key(None, NOW) == status_key(status_view(None, NOW))
    assert log.partition_record().global_refreshes == ["2026-06-01T02:00:00Z"]


def test_an_oversized_payload_is_cut_in_its_dead_letter_and_the_letter_says_so(processor):
    from streams.processing.records import DEAD_LETTER_PAYLOAD_BYTES_MAX

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


def test_a_usage_charge_publishes_what_was_used_and_a_purchase_publishes_none(processor):
    """balance.changed version 2: a projection reads the usage and the rating, never re-rates."""
    log = Log(processor)
    [bought] = by_topic(log.feed(ev.purchase("a", DAY)), topics.BALANCE_CHANGED)
    offpeak = DAY + timedelta(hours=17)
    [change] = by_topic(log.feed_batch([ev.usage("a", offpeak, model="MiMo-V2.5", hit=10, miss=3, output=1)]),
                        topics.BALANCE_CHANGED)
    assert bought["schema_version"] == change["schema_version"] == 2 and bought["usage"] is None
    assert change["credits_charged"] == "416"  # (10 x 2 + 3 x 100 + 1 x 200) x 0.8
    assert change["usage"] == {
        "model": "MiMo-V2.5", "input_cache_hit_tokens": 10, "input_cache_miss_tokens": 3, "output_tokens": 1,
        "coefficient": "0.8", "offpeak": True, "credits_saved": "104", "cluster": "sgp", "protocol": "anthropic",
        "key_id": "key-a"}
