"""The processor's plain-usage fast path publishes and writes exactly what the general path does.

`Processor._apply_plain_usage` applies usage from its fields without the pydantic model,
`step`'s StepResult and the fact records; for every event it either does what `_apply`'s
general path would, byte for byte, or hands the event to it. Random logs (purchases,
upgrades, refreshes, plain and exhausting usage, retries with the same and with other
content, late usage, foreign keys, unknown accounts and models, bad JSON) are applied in
random cuts of units, with and without the fast path; the published records and every
state write must be the same.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.processing import processor as processor_module
from streams.processing.batch_record import FORMAT_HEADER, InputEvent, encode_batch
from streams.processing.processor import Processor
from streams.processing.state_store import DictBackend, PartitionState, RecordCache
from streams.ledger import Limits, load_catalog
from tests.support import events as ev

DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)
NOW = DAY + timedelta(days=3)
ACCOUNTS = ("a", "b", "c", "d")
MODELS = ("mimo-v2.5", "MiMo-V2.5-Pro", "mimo-v2-pro", "mimo-v2.5-tts", "no-such-model")


def random_log(seed: int, length: int) -> list[tuple[bytes | None, bytes]]:
    """(key, value) input records: mostly usage, with every kind of event the rules treat apart."""
    rng = random.Random(seed)
    log: list[tuple[bytes | None, bytes]] = []
    sent: list[dict] = []
    for account in ACCOUNTS[:3]:  # "d" never buys: usage outside any package
        tier = rng.choice(("lite", "lite", "max"))
        log.append((account.encode(), orjson.dumps(ev.purchase(account, DAY, tier=tier))))
    for index in range(length):
        at = DAY + timedelta(hours=1, minutes=index * rng.choice((1, 7, 30)))
        roll = rng.random()
        account = rng.choice(ACCOUNTS)
        if roll < 0.05 and sent:
            event = dict(rng.choice(sent))  # a retry, the same content
        elif roll < 0.07 and sent:
            event = dict(rng.choice(sent), output_tokens=rng.randint(1, 9))  # the same id, other content
        elif roll < 0.09:
            event = ev.upgrade(account, at, rng.choice(("standard", "pro", "max")))
        elif roll < 0.11:
            event = ev.refresh(at, account if rng.random() < 0.5 else None)
        elif roll < 0.13:
            event = ev.usage(account, DAY - timedelta(days=60), miss=10)  # too late once usage moved on
        else:
            miss = rng.choice((0, 10, 1_000, 2_000_000, 10_000_000))  # some exhaust a lite pool
            event = ev.usage(account, at, model=rng.choice(MODELS), hit=rng.randint(0, 5_000), miss=miss,
                             output=rng.randint(0, 800))
        key = event["account_id"].encode() if event.get("account_id") else None
        if rng.random() < 0.02:
            key = b"someone-else"  # a key that is not the event's account: dead letter
        if rng.random() < 0.01:
            log.append((key, b"{not json"))
            continue
        if event["type"] == "usage":
            sent.append(event)
        log.append((key, orjson.dumps(event)))
    return log


def apply_log(log: list[tuple[bytes | None, bytes]], cuts: list[int]) -> tuple[list, list]:
    """Every record published and every state write, with the log cut into v2 records and units at `cuts`."""
    processor = Processor(load_catalog(), Limits())
    backend = DictBackend()
    cache = RecordCache(1_000)
    published, written = [], []
    records = []
    start = 0
    for end in sorted(set(cuts)) + [len(log)]:
        if end > start:
            entries = [InputEvent("usage", 0, position, key, value)
                       for position, (key, value) in enumerate(log[start:end], start)]
            records.append(encode_batch(entries))
            start = end
    offset = 0
    headers = [(FORMAT_HEADER, b"2")]
    for unit_start in range(0, len(records), 3):  # units of up to three records
        unit = records[unit_start:unit_start + 3]
        state = PartitionState(backend, 0, processor.limits, cache, offset)
        emitted = processor.process_records([(value, None, headers, offset + index)
                                             for index, value in enumerate(unit)], state, NOW)
        writes = state.finish()
        backend.write(writes)
        state.commit_to_cache()
        offset += len(unit)
        published += [(emit.topic, emit.key, emit.value) for emit in emitted]
        written += list(writes.ordered())
    return published, written


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**9), st.lists(st.integers(1, 200), max_size=12))
def test_the_fast_path_publishes_and_writes_what_the_general_path_does(seed, cuts):
    log = random_log(seed, 200)
    fast = apply_log(log, cuts)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(processor_module, "plain_usage_fields", lambda raw, limits: None)
        general = apply_log(log, cuts)
    assert fast[0] == general[0]
    assert fast[1] == general[1]


def test_the_fast_path_is_taken_by_plain_usage_and_left_otherwise(monkeypatch):
    """Not vacuous: plain usage is applied by the fast path, every other case by the general one."""
    taken = []
    original = Processor._apply_plain_usage

    def spy(self, usage, *args):
        out = original(self, usage, *args)
        taken.append((usage["event_id"], out is not None))
        return out

    monkeypatch.setattr(Processor, "_apply_plain_usage", spy)
    lite = orjson.dumps(ev.purchase("a", DAY))
    plain = ev.usage("a", DAY + timedelta(hours=1), miss=10, event_id="plain")
    exhausting = ev.usage("a", DAY + timedelta(hours=2), model="mimo-v2-pro", miss=10_000_000,
                          event_id="exhausting")  # 7B credits: more than a lite pool
    unknown = ev.usage("nobody", DAY + timedelta(hours=3), miss=10, event_id="unknown")
    log = [(b"a", lite), (b"a", orjson.dumps(plain)), (b"a", orjson.dumps(plain)),
           (b"a", orjson.dumps(exhausting)), (b"nobody", orjson.dumps(unknown))]
    published, _ = apply_log(log, [])
    assert taken == [("plain", True), ("plain", True), ("exhausting", False), ("unknown", False)]
    assert [topic for topic, _, _ in published].count("balance-changed") == 3  # purchase, plain, exhausting
