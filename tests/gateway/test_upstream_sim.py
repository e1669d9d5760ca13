"""The upstream simulator, through the real OpenAI and Anthropic SDKs (served in process)."""
from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from gateway.upstream_sim import (ANTHROPIC_MIN_CACHEABLE_TOKENS, MESSAGE_OVERHEAD_TOKENS, PrefixCache, SimConfig,
                                  build_app, catalog_models, prefix_digests)

MODEL = "MiMo-V2.5-Pro"
Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Factory: start a simulator on a free port, return its URL; all stop at the end."""
    runners: list[web.AppRunner] = []

    async def start(config: SimConfig | None = None) -> str:
        runner = web.AppRunner(build_app(config or SimConfig()))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def oai(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)


def ant(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="test", max_retries=0)


def estimate(text: str) -> int:
    """The simulator's documented tokenizer estimate for one message."""
    return math.ceil(len(text.encode()) / 4) + MESSAGE_OVERHEAD_TOKENS


def chat(*texts: str) -> list[dict[str, str]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]


async def test_chat_completion_usage(serve: Serve) -> None:
    reply = await oai(await serve()).chat.completions.create(model=MODEL, messages=chat("hello there"))
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens == estimate("hello there")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert len(reply.choices[0].message.content.split()) == usage.completion_tokens
    assert 20 <= usage.completion_tokens <= 200 and reply.choices[0].finish_reason == "stop"


async def test_chat_stream_with_include_usage(serve: Serve) -> None:
    url = await serve()
    plain = await oai(url).chat.completions.create(model=MODEL, messages=chat("stream me"))
    stream = await oai(url).chat.completions.create(model=MODEL, messages=chat("stream me"), stream=True,
                                                    stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(chunk.usage is None for chunk in content)
    assert content[-1].choices[0].finish_reason == "stop"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in content)
    assert text == plain.choices[0].message.content
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens


async def test_chat_stream_without_usage_has_no_usage_chunk(serve: Serve) -> None:
    stream = await oai(await serve()).chat.completions.create(model=MODEL, messages=chat("hi"), stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


async def test_max_tokens_clips_the_reply(serve: Serve) -> None:
    url = await serve()
    reply = await oai(url).chat.completions.create(model=MODEL, messages=chat("hi"), max_completion_tokens=5)
    assert reply.usage.completion_tokens == 5 and reply.choices[0].finish_reason == "length"
    message = await ant(url).messages.create(model=MODEL, max_tokens=3, messages=chat("hi"))
    assert message.usage.output_tokens == 3 and message.stop_reason == "max_tokens"


async def test_responses_usage(serve: Serve) -> None:
    client = oai(await serve())
    reply = await client.responses.create(model=MODEL, input="what is a token?", instructions="be brief")
    usage = reply.usage
    assert usage is not None and usage.input_tokens == estimate("be brief") + estimate("what is a token?")
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert len(reply.output_text.split()) == usage.output_tokens and reply.status == "completed"
    again = await client.responses.create(model=MODEL, input="what is a token?", instructions="be brief")
    assert again.usage.input_tokens_details.cached_tokens == usage.input_tokens


async def test_messages_usage(serve: Serve) -> None:
    message = await ant(await serve()).messages.create(model=MODEL, max_tokens=256, system="sys",
                                                       messages=chat("hello"))
    assert message.usage.input_tokens == estimate("sys") + estimate("hello")
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    assert len(message.content[0].text.split()) == message.usage.output_tokens
    assert message.stop_reason == "end_turn"


async def test_messages_stream_final_message(serve: Serve) -> None:
    plain = await ant(await serve()).messages.create(model=MODEL, max_tokens=256, messages=chat("stream"))
    async with ant(await serve()).messages.stream(model=MODEL, max_tokens=256, messages=chat("stream")) as stream:
        events = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.content[0].text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.stop_reason == "end_turn"


async def test_messages_stream_event_order(serve: Serve) -> None:
    """The raw SSE sequence, as Anthropic sends it."""
    url = await serve()
    stream = await ant(url).messages.create(model=MODEL, max_tokens=4, messages=chat("x"), stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds == ["message_start", "content_block_start"] + ["content_block_delta"] * 4 + [
        "content_block_stop", "message_delta", "message_stop"]  # the SDK drops the ping
    assert events[0].message.usage.input_tokens == estimate("x")
    assert events[-2].usage.output_tokens == 4


async def test_openai_cache_hits_on_repeated_and_extended_prompts(serve: Serve) -> None:
    client = oai(await serve())
    first = await client.chat.completions.create(model=MODEL, messages=chat("a long question"))
    repeat = await client.chat.completions.create(model=MODEL, messages=chat("a long question"))
    assert repeat.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens
    turn = chat("a long question", first.choices[0].message.content, "and then?")
    second = await client.chat.completions.create(model=MODEL, messages=turn)
    assert second.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens
    assert second.usage.prompt_tokens == sum(estimate(m["content"]) for m in turn)


async def test_cache_is_per_model_and_provider(serve: Serve) -> None:
    url = await serve()
    await oai(url).chat.completions.create(model=MODEL, messages=chat("shared"))
    other = await oai(url).chat.completions.create(model="MiMo-V2.5", messages=chat("shared"))
    assert other.usage.prompt_tokens_details.cached_tokens == 0
    message = await ant(url).messages.create(model=MODEL, max_tokens=5, messages=chat("shared"))
    assert message.usage.cache_read_input_tokens == 0


async def test_anthropic_cache_creation_then_read(serve: Serve) -> None:
    client = ant(await serve())
    long_system = "policy " * (ANTHROPIC_MIN_CACHEABLE_TOKENS * 4 // 7 + 10)
    system = [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=chat("q1"))
    assert first.usage.cache_creation_input_tokens == estimate(long_system)
    assert first.usage.cache_read_input_tokens == 0 and first.usage.input_tokens == estimate("q1")
    second = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=chat("q2"))
    assert second.usage.cache_read_input_tokens == estimate(long_system)
    assert second.usage.cache_creation_input_tokens == 0 and second.usage.input_tokens == estimate("q2")


async def test_short_marked_prompt_is_not_written(serve: Serve) -> None:
    system = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    message = await ant(await serve()).messages.create(model=MODEL, max_tokens=5, system=system,
                                                       messages=chat("q"))
    assert message.usage.cache_creation_input_tokens == 0


async def test_deterministic_across_servers(serve: Serve) -> None:
    replies = [await oai(await serve()).chat.completions.create(model=MODEL, messages=chat("same"))
               for _ in range(2)]
    assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
    assert replies[0].usage == replies[1].usage
    other = await oai(await serve()).chat.completions.create(model=MODEL, messages=chat("different"))
    assert other.choices[0].message.content != replies[0].choices[0].message.content


async def test_reply_ids_are_unique_within_a_server(serve: Serve) -> None:
    client = oai(await serve())
    ids = {(await client.chat.completions.create(model=MODEL, messages=chat("same"))).id for _ in range(3)}
    assert len(ids) == 3


async def test_unknown_model_is_the_sdks_not_found(serve: Serve) -> None:
    url = await serve()
    with pytest.raises(openai.NotFoundError) as raised:
        await oai(url).chat.completions.create(model="gpt-nope", messages=chat("hi"))
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    with pytest.raises(anthropic.NotFoundError) as refused:
        await ant(url).messages.create(model="claude-nope", max_tokens=5, messages=chat("hi"))
    assert refused.value.body["error"]["type"] == "not_found_error"


async def test_missing_max_tokens_is_anthropics_bad_request(serve: Serve) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{await serve()}/v1/messages", json={"model": MODEL, "messages": chat("hi")}) as reply:
            assert reply.status == 400
            body = await reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


async def test_raw_sse_framing(serve: Serve) -> None:
    """The wire format itself: Anthropic's named events with a ping, OpenAI's data lines and [DONE]."""
    url = await serve()
    async with aiohttp.ClientSession() as session:
        body = {"model": MODEL, "max_tokens": 2, "messages": chat("x"), "stream": True}
        async with session.post(f"{url}/v1/messages", json=body) as reply:
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            anthropic_text = await reply.text()
        async with session.post(f"{url}/v1/chat/completions", json=body) as reply:
            openai_text = await reply.text()
    names = [line.removeprefix("event: ") for line in anthropic_text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert anthropic_text.endswith("\n\n")
    frames = openai_text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""] and all(f.startswith("data: {") for f in frames[:-2])


async def test_models_list(serve: Serve) -> None:
    url = await serve()
    listed = {model.id async for model in oai(url).models.list()}
    assert listed == catalog_models() and MODEL in listed and "MiMo-V2-TTS" in listed
    assert {model.id async for model in ant(url).models.list()} == listed


async def test_forced_failures(serve: Serve) -> None:
    url = await serve(SimConfig(fail_every=2))
    client = oai(url)
    await client.chat.completions.create(model=MODEL, messages=chat("1"))
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=chat("2"))
    with pytest.raises(anthropic.RateLimitError):
        await ant(url).messages.create(model=MODEL, max_tokens=5, messages=chat("3"),
                                       extra_headers={"x-sim-fail": "429"})


async def test_tokens_per_s_paces_the_stream(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator asks for its latency and then one wait per piece on the tokens_per_s schedule.

    The waits it asks for are recorded (and not slept), so the check does not depend on this
    machine's timing.
    """
    asked: list[float] = []
    sleep = asyncio.sleep

    async def record(delay: float, result: object = None) -> object:
        asked.append(delay)
        return await sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", record)
    client = oai(await serve(SimConfig(tokens_per_s=200, latency_ms=20)))
    stream = await client.chat.completions.create(model=MODEL, messages=chat("slow"), max_tokens=21, stream=True)
    [chunk async for chunk in stream]
    assert 0.02 in asked, "the latency is asked for once"
    paced = [delay for delay in asked if 0 < delay <= 20 / 200 and delay != 0.02]
    assert len(paced) >= 19 and max(paced) > 0.09, f"one wait per piece, the last ~0.1 s after the first: {asked}"


def test_prefix_cache_is_bounded() -> None:
    cache = PrefixCache(limit=3)
    digests = prefix_digests([b"a", b"b", b"c", b"d"])
    cache.remember(digests)
    assert cache.longest_seen(digests) == 4
    assert cache.longest_seen(digests[:1]) == 0  # the oldest prefix was evicted
