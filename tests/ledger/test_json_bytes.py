"""JSON that is kept costs its own size (streams/ledger/json_bytes.py)."""
from __future__ import annotations

import tracemalloc

import orjson

from streams.ledger.json_bytes import json_bytes

FACT = {"event_id": "bc-0123456789abcdef0123456789abcdef", "cause_event_id": "load-1-12345", "type": "balance.changed",
        "package": orjson.Fragment(b'{"tier":"max","period":"monthly"}'), "credits_charged": "10784.5",
        "usage": {"model": "mimo-v2.5", "input_cache_hit_tokens": 1234, "offpeak": False, "key_id": "key-acct-1"},
        "padding": "x" * 500}


def kept_bytes(make) -> int:
    """Memory held by 1,000 kept results of `make()` (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [make() for _ in range(1_000)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(kept) == 1_000
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def test_the_same_bytes_as_orjson():
    assert json_bytes(FACT) == orjson.dumps(FACT)
    assert json_bytes({"b": 1, "a": 2}, option=orjson.OPT_SORT_KEYS) == b'{"a":2,"b":1}'


def test_a_kept_result_holds_its_own_size_not_orjsons_write_buffer():
    size = len(orjson.dumps(FACT))
    own = kept_bytes(lambda: json_bytes(FACT)) / 1_000
    assert own < 2 * size, f"{own:.0f} bytes held per {size}-byte result"
    # What the module is for: orjson's own result keeps its write buffer (~8 KiB here). If an
    # orjson upgrade makes this fail, its results no longer need the copy: json_bytes may go.
    assert kept_bytes(lambda: orjson.dumps(FACT)) / 1_000 > 4 * size, "orjson now returns right-sized bytes"
