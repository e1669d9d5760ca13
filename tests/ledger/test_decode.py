"""decode.py: bytes/str/dict -> Event or a named Rejection; never raises; fast path == pydantic."""
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_ADAPTER, Usage
from streams.ledger import Limits, Rejection, decode_event
from streams.ledger.decode import _fast_usage, plain_usage_fields
from tests.ledger.conftest import purchase, refresh, usage, utc


def reason(raw, limits=Limits()):
    result = decode_event(raw, limits)
    assert isinstance(result, Rejection), result
    return result.reason.value


def test_decodes_bytes_str_and_dict_alike():
    data = usage(event_id="u1", at="2026-05-02T18:00:00+08:00")
    from_bytes, from_str, from_dict = (decode_event(orjson.dumps(data)),
                                       decode_event(orjson.dumps(data).decode()), decode_event(data))
    assert from_bytes == from_str == from_dict
    assert from_bytes.occurred_at == utc(2026, 5, 2, 10)


@pytest.mark.parametrize("change,expected", [
    ({"type": "usage.v2"}, "unknown_type"),
    ({"occurred_at": "2026-05-02T10:00:00"}, "invalid_timestamp"),
    ({"occurred_at": "2026-05-02"}, "invalid_timestamp"),
    ({"occurred_at": "02/05/2026 10:00"}, "invalid_timestamp"),
    ({"occurred_at": "2026-05-02T10:00:00.1234567Z"}, "invalid_timestamp"),
    ({"occurred_at": "2026-13-02T10:00:00Z"}, "invalid_timestamp"),
    ({"occurred_at": 1777716000}, "invalid_timestamp"),
    ({"output_tokens": -1}, "tokens_out_of_range"),
    ({"output_tokens": 10_000_001}, "tokens_out_of_range"),
    ({"output_tokens": "5"}, "invalid_event"),
    ({"output_tokens": 5.0}, "invalid_event"),
    ({"output_tokens": True}, "invalid_event"),
    ({"output_tokens": None}, "invalid_event"),
    ({"cluster": "eu"}, "invalid_event"),
    ({"protocol": "grpc"}, "invalid_event"),
    ({"event_id": "x" * 129}, "id_too_long"),
    ({"event_id": ""}, "invalid_event"),
    ({"account_id": 7}, "invalid_event"),
    ({"client": "agent tp-AbCdEf123456"}, "secret_in_event"),
    ({"note": {"nested": ["tp-0123456789abc"]}}, "secret_in_event"),
])
def test_bad_usage_is_rejected_with_a_reason(change, expected):
    data = {**usage(event_id="u1"), **change}
    assert reason(data) == expected
    assert reason(orjson.dumps(data)) == expected


@pytest.mark.parametrize("missing", ["event_id", "occurred_at", "account_id", "model", "output_tokens",
                                     "key_id", "cluster", "protocol"])
def test_missing_field(missing):
    data = usage()
    del data[missing]
    assert reason(data) in ("invalid_event", "invalid_timestamp")


def test_missing_type_and_non_objects():
    data = usage()
    del data["type"]
    assert reason(data) == "invalid_event"
    assert reason(b"{not json") == "invalid_json"
    assert reason(b"[1, 2]") == "invalid_json"
    assert reason(b"\xff\xfe") == "invalid_json"
    assert reason(42) == "invalid_json"
    assert reason(b" " * 70_000) == "event_too_large"


def test_plan_events_need_account_and_valid_values():
    data = purchase()
    del data["account_id"]
    assert reason(data) == "invalid_event"
    assert reason({**purchase(), "tier": "ultra"}) == "invalid_event"
    assert reason({**purchase(), "auto_renew": "yes"}) == "invalid_event"
    assert reason({**purchase(), "currency": "EUR"}) == "invalid_event"
    assert decode_event(refresh()).account_id is None


def test_secret_never_in_rejection():
    key = "tp-SuperSecretKey0001"
    for raw in ({**usage(), "key_id": key}, orjson.dumps({**usage(), "client": key}),
                {**usage(), "event_id": key}):
        rejection = decode_event(raw)
        assert rejection.reason == "secret_in_event"
        assert "SuperSecret" not in repr(rejection) and "SuperSecret" not in str(rejection.to_dict())


def test_escaped_secret_is_still_found():
    raw = orjson.dumps(usage()).replace(b'"key-1"', b'"\\u0074p-abcdefgh1234"')
    assert reason(raw) == "secret_in_event"


def test_limits_can_tighten():
    assert reason(usage(out=1001), Limits(tokens_per_field_max=1000)) == "tokens_out_of_range"
    assert reason(usage(event_id="x" * 20), Limits(event_id_length_max=10)) == "id_too_long"


def test_extra_fields_kept_but_ignored():
    event = decode_event(orjson.dumps(usage(trace_id="abc")))
    assert event.model_extra == {"trace_id": "abc"}


_text = st.one_of(st.text(max_size=8), st.sampled_from(["cn", "sgp", "openai", "usage", ""]),
                  st.text(min_size=120, max_size=140))
_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 10_000_002), st.floats(allow_nan=False),
                    _text, st.sampled_from(["2026-05-02T10:00:00Z", "2026-05-02T10:00:00",
                                            "2026-05-02T10:00:00.5+08:00"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(Usage.model_fields) + ["extra"]), _values, max_size=4),
       st.sets(st.sampled_from(list(Usage.model_fields)), max_size=2))
def test_fast_path_agrees_with_pydantic(changes, dropped):
    data = {**usage(event_id="u1"), **changes}
    data["type"] = "usage" if changes.get("type") is None else data["type"]
    for name in dropped:
        data.pop(name, None)
    fast = _fast_usage(data, Limits())
    try:
        slow = EVENT_ADAPTER.validate_python(data)
    except Exception:
        slow = None
    if fast is not None:  # the fast path only accepts what the model accepts, identically
        assert slow is not None
        assert fast == slow and fast.model_extra == slow.model_extra
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.model_dump_json() == slow.model_dump_json()
    assert decode_event(data) == (slow if slow is not None else decode_event(data))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(Usage.model_fields) + ["extra"]), _values, max_size=4),
       st.sets(st.sampled_from(list(Usage.model_fields)), max_size=2),
       st.sampled_from(["", "tp-0123456789abc", "caf\u00e9", "a\\\\b"]))
def test_plain_usage_fields_are_the_fast_paths_model(changes, dropped, client):
    """`plain_usage_fields(raw)` is exactly the __dict__ of what `decode_event(raw)` gives, when not None."""
    data = {**usage(event_id="u1", client=client), **changes}
    for name in dropped:
        data.pop(name, None)
    raw = orjson.dumps(data)
    fields = plain_usage_fields(raw)
    event = decode_event(raw)
    if fields is not None:
        assert type(event) is Usage and fields == event.__dict__
    elif _fast_usage(data, Limits()) is not None:  # refused only for a possible secret
        assert b"tp-" in raw or b"\\u" in raw
    assert plain_usage_fields(raw.decode()) is None and plain_usage_fields(raw, Limits(event_bytes_max=10)) is None
