"""gateway/usage: exact counts from real response shapes (typed SDK objects and JSON),
UsageError with its reason for every inconsistent usage, and the SSE decoder under splits."""
from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.usage import anthropic as anthropic_usage
from gateway.usage import openai as openai_usage
from gateway.usage.counts import UsageCounts, UsageError
from gateway.usage.sse import SseDecoder
from schemas.events import TOKENS_PER_FIELD_MAX

# --- Realistic payloads, shaped as the providers document them -----------------------------

CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "o4-mini-2025-04-16",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "The answer is 42.", "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": None,
}
CHAT_COUNTS = UsageCounts(input_cache_hit_tokens=1920, input_cache_miss_tokens=86, output_tokens=300)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None}


CHAT_CHUNKS: list[dict[str, Any]] = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hello"}),
    _chunk({"content": " there"}),
    _chunk({}, finish="stop"),
    {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
     "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices": [],
     "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
               "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0,
                                             "rejected_prediction_tokens": 0}}},
]
CHAT_STREAM_COUNTS = UsageCounts(input_cache_hit_tokens=1024, input_cache_miss_tokens=93, output_tokens=46)

RESPONSE: dict[str, Any] = {
    "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
    "object": "response",
    "created_at": 1741476777,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "o3-2025-04-16",
    "output": [{
        "type": "message",
        "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "In a peaceful grove...", "annotations": []}],
    }],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": "medium", "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 4096,
        "input_tokens_details": {"cached_tokens": 3072, "cache_write_tokens": 0},
        "output_tokens": 1500,
        "output_tokens_details": {"reasoning_tokens": 1200},
        "total_tokens": 5596,
    },
    "user": None,
    "metadata": {},
}
RESPONSE_COUNTS = UsageCounts(input_cache_hit_tokens=3072, input_cache_miss_tokens=1024, output_tokens=1500)

MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 4096,
        "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 503,
        "output_tokens_details": {"thinking_tokens": 200},
        "service_tier": "standard",
    },
}
MESSAGE_COUNTS = UsageCounts(input_cache_hit_tokens=4096, input_cache_miss_tokens=2060, output_tokens=503)

MESSAGE_EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
        "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_creation_input_tokens": 1000,
                  "cache_read_input_tokens": 3000, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
]
MESSAGE_STREAM_COUNTS = UsageCounts(input_cache_hit_tokens=3000, input_cache_miss_tokens=1025, output_tokens=15)

_ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
_RESPONSES_EVENT = TypeAdapter(ResponseStreamEvent)


def _forms(payload: dict[str, Any], typed: Callable[[dict[str, Any]], object]) -> list[object]:
    """The same payload as a typed SDK object, a dict, JSON bytes and JSON str."""
    data = orjson.dumps(payload)
    return [typed(payload), payload, data, data.decode()]


# --- Exact counts ------------------------------------------------------------------------


@pytest.mark.parametrize("form", _forms(CHAT_COMPLETION, ChatCompletion.model_validate))
def test_chat_completion_counts_reasoning_once(form: object) -> None:
    assert openai_usage.chat_completion(form) == CHAT_COUNTS


@pytest.mark.parametrize("typed", [True, False])
def test_chat_stream_reads_the_usage_only_final_chunk(typed: bool) -> None:
    chunks: list[object] = [ChatCompletionChunk.model_validate(c) for c in CHAT_CHUNKS] if typed \
        else [orjson.dumps(c) for c in CHAT_CHUNKS] + [b"[DONE]"]
    assert openai_usage.chat_stream(chunks) == CHAT_STREAM_COUNTS


@pytest.mark.parametrize("form", _forms(RESPONSE, Response.model_validate))
def test_responses_counts(form: object) -> None:
    assert openai_usage.responses(form) == RESPONSE_COUNTS


@pytest.mark.parametrize("terminal", ["response.completed", "response.incomplete"])
@pytest.mark.parametrize("typed", [True, False])
def test_responses_stream_reads_the_terminal_event(terminal: str, typed: bool) -> None:
    in_progress = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    final = {**RESPONSE, "status": terminal.removeprefix("response.")}
    if terminal == "response.incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": in_progress},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
         "output_index": 0, "content_index": 0, "delta": "In a", "logprobs": []},
        {"type": terminal, "sequence_number": 2, "response": final},
    ]
    forms = [_RESPONSES_EVENT.validate_python(e) for e in events] if typed else events
    assert openai_usage.responses_stream(forms) == RESPONSE_COUNTS


@pytest.mark.parametrize("form", _forms(MESSAGE, Message.model_validate))
def test_message_counts_cache_creation_as_miss(form: object) -> None:
    assert anthropic_usage.message(form) == MESSAGE_COUNTS


@pytest.mark.parametrize("typed", [True, False])
def test_message_stream_start_plus_cumulative_delta(typed: bool) -> None:
    events = [_ANTHROPIC_EVENT.validate_python(e) for e in MESSAGE_EVENTS] if typed \
        else [orjson.dumps(e).decode() for e in MESSAGE_EVENTS]
    assert anthropic_usage.message_stream(events) == MESSAGE_STREAM_COUNTS


def test_message_stream_delta_fields_replace_the_start() -> None:
    events = copy.deepcopy(MESSAGE_EVENTS)
    events[5]["usage"] = {"input_tokens": 30, "cache_creation_input_tokens": None,
                          "cache_read_input_tokens": 2000, "output_tokens": 40}
    # input and cache read replaced; the null cache creation leaves the start's 1000.
    assert anthropic_usage.message_stream(events) == UsageCounts(2000, 1030, 40)


def test_message_stream_last_delta_wins() -> None:
    events = copy.deepcopy(MESSAGE_EVENTS)
    events.insert(5, {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}})
    assert anthropic_usage.message_stream(events) == MESSAGE_STREAM_COUNTS


def test_null_or_absent_details_are_zero() -> None:
    chat = copy.deepcopy(CHAT_COMPLETION)
    chat["usage"]["prompt_tokens_details"] = None
    assert openai_usage.chat_completion(chat) == UsageCounts(0, 2006, 300)
    chat["usage"]["prompt_tokens_details"] = {"cached_tokens": None}
    assert openai_usage.chat_completion(chat) == UsageCounts(0, 2006, 300)
    del chat["usage"]["prompt_tokens_details"]
    assert openai_usage.chat_completion(ChatCompletion.model_validate(chat)) == UsageCounts(0, 2006, 300)
    message = copy.deepcopy(MESSAGE)
    message["usage"] = {"input_tokens": 12, "cache_read_input_tokens": None, "output_tokens": 5}
    assert anthropic_usage.message(message) == UsageCounts(0, 12, 5)
    assert anthropic_usage.message(Message.model_validate(message)) == UsageCounts(0, 12, 5)


def test_as_event_fields_names_the_usage_event_fields() -> None:
    assert CHAT_COUNTS.as_event_fields() == {
        "input_cache_hit_tokens": 1920, "input_cache_miss_tokens": 86, "output_tokens": 300}


# --- Inconsistent usage: UsageError with its reason -------------------------------------


def _with_chat_usage(**usage: object) -> dict[str, Any]:
    return {**CHAT_COMPLETION, "usage": {"prompt_tokens": 10, "completion_tokens": 5, **usage}}


@pytest.mark.parametrize(("response", "reason"), [
    ({**CHAT_COMPLETION, "usage": None}, "usage_missing"),
    ({k: v for k, v in CHAT_COMPLETION.items() if k != "usage"}, "usage_missing"),
    (_with_chat_usage(prompt_tokens_details={"cached_tokens": 11}), "usage_cached_exceeds_prompt"),
    (_with_chat_usage(prompt_tokens=-1), "usage_negative"),
    (_with_chat_usage(prompt_tokens_details={"cached_tokens": -1}), "usage_negative"),
    (_with_chat_usage(completion_tokens=True), "usage_not_integer"),
    (_with_chat_usage(prompt_tokens=10.0), "usage_not_integer"),
    (_with_chat_usage(prompt_tokens="10"), "usage_not_integer"),
    (_with_chat_usage(completion_tokens=TOKENS_PER_FIELD_MAX + 1), "usage_too_large"),
    (_with_chat_usage(prompt_tokens=None), "usage_field_missing"),
    ({**CHAT_COMPLETION, "usage": {"prompt_tokens": 10}}, "usage_field_missing"),
    (_with_chat_usage(prompt_tokens_details=5), "usage_malformed"),
    ({**CHAT_COMPLETION, "usage": [10, 5]}, "usage_malformed"),
])
def test_chat_completion_refuses(response: dict[str, Any], reason: str) -> None:
    for form in (response, orjson.dumps(response)):
        with pytest.raises(UsageError) as caught:
            openai_usage.chat_completion(form)
        assert caught.value.reason == reason
        assert isinstance(caught.value, ValueError) and reason in str(caught.value)


def test_typed_objects_built_without_validation_are_checked_too() -> None:
    # The SDKs build responses without validating them, so a typed object may hold `true`.
    usage = CompletionUsage.model_construct(prompt_tokens=True, completion_tokens=1, total_tokens=2)
    with pytest.raises(UsageError) as caught:
        openai_usage.chat_completion(ChatCompletion.model_construct(usage=usage))
    assert caught.value.reason == "usage_not_integer"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "response_not_json"),
    ("", "response_not_json"),
    (b"[1, 2]", "usage_malformed"),
    (None, "usage_malformed"),
])
def test_not_a_response(payload: object, reason: str) -> None:
    for parse in (openai_usage.chat_completion, openai_usage.responses, anthropic_usage.message):
        with pytest.raises(UsageError) as caught:
            parse(payload)
        assert caught.value.reason == reason


@pytest.mark.parametrize(("usage", "reason"), [
    (None, "usage_missing"),
    ({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 11}, "output_tokens": 1},
     "usage_cached_exceeds_prompt"),
    ({"input_tokens": 10, "output_tokens": -2}, "usage_negative"),
    ({"input_tokens": False, "output_tokens": 2}, "usage_not_integer"),
    ({"output_tokens": 2}, "usage_field_missing"),
])
def test_responses_refuses(usage: object, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        openai_usage.responses({**RESPONSE, "usage": usage})
    assert caught.value.reason == reason


@pytest.mark.parametrize(("usage", "reason"), [
    (None, "usage_missing"),
    ({"input_tokens": 1, "cache_read_input_tokens": -5, "output_tokens": 2}, "usage_negative"),
    ({"input_tokens": 1, "cache_creation_input_tokens": 2.5, "output_tokens": 2}, "usage_not_integer"),
    ({"input_tokens": 1, "output_tokens": True}, "usage_not_integer"),
    ({"input_tokens": TOKENS_PER_FIELD_MAX + 1, "output_tokens": 2}, "usage_too_large"),
    # Each field in bounds, the miss sum (input + cache creation) is not.
    ({"input_tokens": TOKENS_PER_FIELD_MAX, "cache_creation_input_tokens": 1, "output_tokens": 2},
     "usage_too_large"),
    ({"cache_read_input_tokens": 5, "output_tokens": 2}, "usage_field_missing"),
    ({"input_tokens": 1}, "usage_field_missing"),
])
def test_message_refuses(usage: object, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        anthropic_usage.message({**MESSAGE, "usage": usage})
    assert caught.value.reason == reason


def test_chat_stream_without_usage_chunk_is_missing() -> None:
    with pytest.raises(UsageError) as caught:
        openai_usage.chat_stream(CHAT_CHUNKS[:-1])
    assert caught.value.reason == "usage_missing"
    assert "include_usage" in str(caught.value)


def test_chat_stream_inconsistent_final_usage() -> None:
    last = {**CHAT_CHUNKS[-1], "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                                         "prompt_tokens_details": {"cached_tokens": 6}}}
    with pytest.raises(UsageError) as caught:
        openai_usage.chat_stream([*CHAT_CHUNKS[:-1], last])
    assert caught.value.reason == "usage_cached_exceeds_prompt"


def test_responses_stream_without_terminal_event_is_missing() -> None:
    events = [{"type": "response.created", "sequence_number": 0, "response": RESPONSE}]
    with pytest.raises(UsageError) as caught:
        openai_usage.responses_stream(events)
    assert caught.value.reason == "usage_missing"


@pytest.mark.parametrize(("events", "reason"), [
    (MESSAGE_EVENTS[1:], "usage_missing"),  # no message_start
    (MESSAGE_EVENTS[:5], "usage_stream_incomplete"),  # cut before message_delta
    ([], "usage_missing"),
])
def test_message_stream_refuses(events: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        anthropic_usage.message_stream(events)
    assert caught.value.reason == reason


def test_message_stream_inconsistent_delta() -> None:
    events = copy.deepcopy(MESSAGE_EVENTS)
    events[5]["usage"] = {"output_tokens": -1}
    with pytest.raises(UsageError) as caught:
        anthropic_usage.message_stream(events)
    assert caught.value.reason == "usage_negative"


def test_usage_counts_refuse_out_of_bounds() -> None:
    for bad, reason in ((-1, "usage_negative"), (True, "usage_not_integer"),
                        (TOKENS_PER_FIELD_MAX + 1, "usage_too_large")):
        with pytest.raises(UsageError) as caught:
            UsageCounts(0, bad, 0)  # type: ignore[arg-type]
        assert caught.value.reason == reason


# --- SSE: the decoder under any split ----------------------------------------------------


def _sse(events: list[dict[str, Any]], *, named: bool, newline: bytes = b"\n") -> bytes:
    parts = []
    for event in events:
        head = b"event: " + event["type"].encode() + newline if named else b""
        parts.append(head + b"data: " + orjson.dumps(event) + newline + newline)
    return b"".join(parts)


def _decode_in_pieces(data: bytes, cuts: list[int]) -> list[tuple[str | None, str]]:
    decoder = SseDecoder()
    events: list[tuple[str | None, str]] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:]):
        events += decoder.feed(data[start:end])
    return events


def test_sse_to_usage_for_anthropic_in_random_splits() -> None:
    data = _sse([*MESSAGE_EVENTS[:1], {"type": "ping"}, *MESSAGE_EVENTS[1:]], named=True,
                newline=b"\r\n")
    rng = random.Random(12)
    for _ in range(20):
        cuts = rng.sample(range(len(data)), rng.randint(0, 40))
        usage = anthropic_usage.MessageStreamUsage()
        for name, payload in _decode_in_pieces(data, cuts):
            event = orjson.loads(payload)
            assert name == event["type"]
            usage.feed(event)
        assert usage.result() == MESSAGE_STREAM_COUNTS


def test_sse_to_usage_for_openai_byte_by_byte() -> None:
    data = _sse(CHAT_CHUNKS, named=False) + b"data: [DONE]\n\n"
    decoded = _decode_in_pieces(data, list(range(1, len(data))))
    assert decoded[-1] == (None, "[DONE]")
    usage = openai_usage.ChatStreamUsage()
    for _, payload in decoded[:-1]:
        usage.feed(orjson.loads(payload))
    assert usage.result() == CHAT_STREAM_COUNTS


def test_sse_fields_comments_and_multiline_data() -> None:
    data = ("\ufeff: keep-alive\n"
            "event: one\nid: 7\nretry: 1000\ndata: a\ndata:b\ndata:  c\n\n"
            "event: only-a-name\n\n"  # no data: not dispatched (SSE spec)
            "data\n\n"  # a field without a colon: empty data
            "data: é中\r\n\r\n"
            "data: unfinished").encode()
    assert _decode_in_pieces(data, []) == [("one", "a\nb\n c"), (None, ""), (None, "é中")]


def test_sse_refuses_an_endless_event() -> None:
    decoder = SseDecoder(max_event_bytes=64)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(UsageError) as caught:
        decoder.feed(b"x" * 50)
    assert caught.value.reason == "sse_event_too_large"


_LINE_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                     max_size=20)
_EVENTS = st.lists(st.tuples(st.one_of(st.none(), _LINE_TEXT.filter(lambda s: s != "")),
                             st.lists(_LINE_TEXT, min_size=1, max_size=3)), max_size=6)


@given(events=_EVENTS, crlf=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_sse_any_split_gives_the_same_events(events: list[tuple[str | None, list[str]]],
                                             crlf: bool, cuts: list[int]) -> None:
    newline = "\r\n" if crlf else "\n"
    text = "".join((f"event: {name}{newline}" if name is not None else "")
                   + "".join(f"data: {line}{newline}" for line in lines) + newline
                   for name, lines in events)
    data = text.encode()
    expected = [(name, "\n".join(lines)) for name, lines in events]
    assert _decode_in_pieces(data, []) == expected
    assert _decode_in_pieces(data, [c % (len(data) + 1) for c in cuts]) == expected
    assert _decode_in_pieces(data, list(range(1, len(data)))) == expected
