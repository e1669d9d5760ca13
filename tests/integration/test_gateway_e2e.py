"""The reference gateway end to end: real SDKs -> gateway -> upstream-sim, usage -> broker -> worker.

One worker, one upstream-sim and one gateway per module (start-up is the slow part);
each test uses accounts of its own.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import anthropic
import openai
import orjson
import pytest

from deploy.localrun import REPO, gateway_process, upstream_sim
from schemas.topics import PLANS, UNMETERED, USAGE
from tests.support.events import purchase, usage
from tests.support.kafka_io import consume_all, produce, wait_lookup

pytestmark = pytest.mark.integration

MODEL = "MiMo-V2.5"
ISSUED_KEYS: list[str] = []
CLIENTS: list = []


@pytest.fixture(autouse=True)
async def close_clients():
    """SDK clients made by a test are closed on its own event loop."""
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, ns, worker, tmp_path_factory):
    """(gateway, sim, data_dir) running against the module's worker."""
    data_dir = tmp_path_factory.mktemp("gateway")
    sim = upstream_sim(data_dir).start()
    sim.wait_ready()
    gateway = gateway_process(kafka_bootstrap, ns, worker.url, sim.url, data_dir,
                              env={"TOKENPLAN_GATEWAY_UNCONFIRMED_TTL_MS": "60000"}).start()
    gateway.wait_ready()
    yield gateway, sim, data_dir
    gateway.stop()
    sim.stop()


def keys_cli(kafka_bootstrap, ns, data_dir, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOKENPLAN_TOPIC_PREFIX": ns.topic_prefix,
           "TOKENPLAN_KEY_SECRET_FILE": str(data_dir / "key-secret"), "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run([sys.executable, "-m", "streams.cli", "keys", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=90)


def issue(kafka_bootstrap, ns, data_dir, account: str) -> tuple[str, str]:
    done = keys_cli(kafka_bootstrap, ns, data_dir, "issue", "--account", account, "--label", "test")
    assert done.returncode == 0, done.stderr
    issued = orjson.loads(done.stdout)
    assert issued["key"].startswith("tp-") and issued["key"] not in done.stderr
    ISSUED_KEYS.append(issued["key"])
    return issued["key"], issued["key_id"]


async def buy(kafka_bootstrap, ns, worker, account: str, at: datetime | None = None, tier: str = "lite") -> None:
    at = at or datetime.now(timezone.utc) - timedelta(minutes=5)
    await produce(kafka_bootstrap, ns.topic(PLANS), [purchase(account, at, tier=tier)])
    if at > datetime.now(timezone.utc) - timedelta(days=20):
        await wait_lookup(worker, account, lambda body: body["status"] == "active")


def openai_client(gateway, key: str, **options) -> openai.AsyncOpenAI:
    CLIENTS.append(openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, **options))
    return CLIENTS[-1]


def anthropic_client(gateway, key: str) -> anthropic.AsyncAnthropic:
    CLIENTS.append(anthropic.AsyncAnthropic(base_url=f"{gateway.url}/anthropic", api_key=key, max_retries=0))
    return CLIENTS[-1]


async def raised(call, error_class: type[Exception], timeout_s: float = 20.0) -> Exception:
    """The error `call()` raises once the gateway's cache has caught up (it follows topics)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await call()
        except error_class as error:
            return error
        except (openai.APIStatusError, anthropic.APIStatusError):
            pass  # the cache has not seen the key or the status yet
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{error_class.__name__} not raised within {timeout_s}s")
        await asyncio.sleep(0.2)


async def until_key_known(gateway, key: str) -> None:
    """Until the gateway's cache holds a freshly issued key (GET /v1/models answers 200)."""
    await raised(lambda: _models_ok(gateway, key), StopAsyncIteration)


async def _models_ok(gateway, key: str) -> None:
    await openai_client(gateway, key).models.list()
    raise StopAsyncIteration


async def usage_events(kafka_bootstrap, ns, account: str, count: int) -> list[dict]:
    for _ in range(30):
        events = [orjson.loads(v) for _k, v in await consume_all(kafka_bootstrap, ns.topic(USAGE), idle_s=0.5)]
        mine = [e for e in events if e["account_id"] == account]
        if len(mine) >= count:
            return mine
        await asyncio.sleep(0.5)
    raise AssertionError(f"{count} usage events of {account} expected, got {len(mine)}")


async def test_openai_sdk_chat_is_served_and_metered_whole_and_streamed(kafka_bootstrap, ns, worker, stack):
    gateway, _sim, data_dir = stack
    account = f"gw-openai-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, account)
    key, key_id = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, key)
    client = openai_client(gateway, key, default_headers={"User-Agent": "opencode/0.9.1"})
    messages = [{"role": "system", "content": "You are a coding agent. " * 40},
                {"role": "user", "content": "Refactor main.py"}]

    whole = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=64)
    stream = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=64, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    plain = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=64, stream=True)
    plain_chunks = [chunk async for chunk in plain]

    assert whole.choices[0].message.content
    streamed_usage = chunks[-1].usage
    assert streamed_usage is not None and chunks[-1].choices == []
    assert all(chunk.choices for chunk in plain_chunks), "no usage-only chunk the client did not ask for"
    events = await usage_events(kafka_bootstrap, ns, account, 3)
    first, second, third = events
    assert (first["input_cache_hit_tokens"] + first["input_cache_miss_tokens"], first["output_tokens"]) == \
        (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert first["input_cache_hit_tokens"] == (whole.usage.prompt_tokens_details.cached_tokens or 0)
    assert second["input_cache_hit_tokens"] == streamed_usage.prompt_tokens_details.cached_tokens > 0
    assert second["output_tokens"] == streamed_usage.completion_tokens
    assert third["output_tokens"] > 0
    for event in events:
        assert (event["key_id"], event["cluster"], event["protocol"], event["client"]) == \
            (key_id, "sgp", "openai", "opencode/0.9.1")
        assert event["model"] == MODEL
    await wait_lookup(worker, account, lambda body: body["credits_used"] not in (None, "0"))


async def test_anthropic_sdk_messages_are_metered_with_cache_creation_as_miss(kafka_bootstrap, ns, worker, stack):
    gateway, _sim, data_dir = stack
    account = f"gw-anthropic-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, account)
    key, _key_id = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, key)
    client = anthropic_client(gateway, key)
    system = [{"type": "text", "text": "You are Claude Code. " * 400, "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": "Fix the failing test"}]

    first = await client.messages.create(model=MODEL, max_tokens=64, system=system, messages=messages)
    async with client.messages.stream(model=MODEL, max_tokens=64, system=system, messages=messages) as stream:
        final = await stream.get_final_message()

    events = await usage_events(kafka_bootstrap, ns, account, 2)
    u = first.usage
    assert u.cache_creation_input_tokens > 0, "the simulator reports a first long cached prompt as cache creation"
    assert events[0]["input_cache_miss_tokens"] == u.input_tokens + u.cache_creation_input_tokens
    assert events[0]["input_cache_hit_tokens"] == (u.cache_read_input_tokens or 0)
    assert events[1]["input_cache_hit_tokens"] == final.usage.cache_read_input_tokens > 0
    assert events[1]["output_tokens"] == final.usage.output_tokens
    assert {e["protocol"] for e in events} == {"anthropic"}


async def test_idempotency_key_becomes_the_event_id_and_a_retry_is_charged_once(kafka_bootstrap, ns, worker, stack):
    gateway, _sim, data_dir = stack
    account = f"gw-idem-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, account)
    key, _ = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, key)
    client = openai_client(gateway, key)
    idem = f"idem-{uuid.uuid4().hex}"
    for _ in range(2):
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=16,
                                             extra_headers={"Idempotency-Key": idem})
    events = await usage_events(kafka_bootstrap, ns, account, 2)
    assert [e["event_id"] for e in events] == [idem, idem]
    body = await wait_lookup(worker, account, lambda b: b["credits_used"] not in (None, "0"))
    await asyncio.sleep(1.0)
    again = await wait_lookup(worker, account, lambda b: True)
    assert again["credits_used"] == body["credits_used"], "the second send of one id is not charged"


async def test_refusals_raise_each_sdks_own_error(kafka_bootstrap, ns, worker, stack):
    gateway, _sim, data_dir = stack
    messages = [{"role": "user", "content": "hello"}]
    # unknown key
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        await openai_client(gateway, "tp-" + "x" * 40).chat.completions.create(model=MODEL, messages=messages)
    with pytest.raises(anthropic.AuthenticationError, match="not valid"):
        await anthropic_client(gateway, "tp-" + "y" * 40).messages.create(model=MODEL, max_tokens=8, messages=messages)
    # no package
    nobody = f"gw-none-{uuid.uuid4().hex[:6]}"
    key, _ = issue(kafka_bootstrap, ns, data_dir, nobody)
    error = await raised(lambda: openai_client(gateway, key).chat.completions.create(model=MODEL, messages=messages),
                         openai.PermissionDeniedError)
    assert "no Token Plan package" in str(error)
    # expired package
    old = f"gw-old-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, old, at=datetime.now(timezone.utc) - timedelta(days=70))
    await wait_lookup(worker, old, lambda body: body["status"] == "expired")
    key, _ = issue(kafka_bootstrap, ns, data_dir, old)
    error = await raised(lambda: anthropic_client(gateway, key).messages.create(model=MODEL, max_tokens=8,
                                                                               messages=messages),
                         anthropic.PermissionDeniedError)
    assert "expired" in str(error)
    # exhausted
    spent = f"gw-spent-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, spent)
    key, _ = issue(kafka_bootstrap, ns, data_dir, spent)
    await produce(kafka_bootstrap, ns.topic(USAGE), [usage(spent, datetime.now(timezone.utc) - timedelta(minutes=1),
                                                          model="MiMo-V2-Pro", output=5_000_000)])
    await wait_lookup(worker, spent, lambda body: body["status"] == "exhausted")
    error = await raised(lambda: openai_client(gateway, key).chat.completions.create(model=MODEL, messages=messages),
                         openai.RateLimitError)
    assert "credits are used up" in str(error) and "upgrade" in str(error)
    error = await raised(lambda: anthropic_client(gateway, key).messages.create(model=MODEL, max_tokens=8,
                                                                               messages=messages),
                         anthropic.RateLimitError)
    assert "credits are used up" in str(error)
    # revoked
    live = f"gw-revoke-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, worker, live)
    key, key_id = issue(kafka_bootstrap, ns, data_dir, live)
    await until_key_known(gateway, key)
    await openai_client(gateway, key).chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    revoked = keys_cli(kafka_bootstrap, ns, data_dir, "revoke", key_id, "--reason", "laptop lost")
    assert revoked.returncode == 0, revoked.stderr
    error = await raised(lambda: openai_client(gateway, key).chat.completions.create(model=MODEL, messages=messages),
                         openai.AuthenticationError)
    assert "revoked" in str(error)
    listed = keys_cli(kafka_bootstrap, ns, data_dir, "list", "--account", live)
    assert orjson.loads(listed.stdout.splitlines()[0])["status"] == "revoked"
    # a model outside the plan
    with pytest.raises(openai.NotFoundError, match="not in the plan"):
        await openai_client(gateway, key).chat.completions.create(model="gpt-4o", messages=messages)


async def test_models_lists_the_eight_plan_models(kafka_bootstrap, ns, worker, stack):
    gateway, _sim, data_dir = stack
    account = f"gw-models-{uuid.uuid4().hex[:6]}"
    key, _ = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, key)
    models = [m.id async for m in openai_client(gateway, key).models.list()]
    assert len(models) == 8 and "MiMo-V2.5-Pro" in models and "MiMo-V2-TTS" in models


async def test_no_key_appears_in_logs_events_or_metrics(kafka_bootstrap, ns, worker, stack):
    gateway, sim, _data_dir = stack
    assert ISSUED_KEYS, "run with the tests above: they issue and use keys"
    import urllib.request
    with urllib.request.urlopen(f"{gateway.url}/metrics") as response:
        metrics = response.read().decode()
    assert "tokenplan_gateway_requests_total" in metrics
    texts = {"gateway log": gateway.log_text(), "sim log": sim.log_text(), "worker log": worker.log_tail(100_000),
             "metrics": metrics}
    for short in (USAGE, PLANS, UNMETERED, "keys", "quota-status", "balance-changed", "rejected"):
        records = await consume_all(kafka_bootstrap, ns.topic(short), idle_s=0.5)
        texts[short] = "\n".join((v or b"").decode(errors="replace") for _k, v in records)
    for where, text in texts.items():
        for key in ISSUED_KEYS:
            assert key not in text and key[3:] not in text, f"an API key appears in the {where}"
