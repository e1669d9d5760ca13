"""A reply without usable usage: served, never charged as zero, recorded for audit.

The gateway runs in process (`gateway.proxy.serve.running`) on the real broker; the
upstream is a small aiohttp app that answers without usage, or with inconsistent usage;
the key and the account's status are published on their topics as a worker would.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from deploy.localrun import Namespace
from gateway.config import GatewaySettings
from gateway.kafka import ensure_topics
from gateway.keys.records import issued
from gateway.keys.secrets import hash_key, load_key_secret, new_key
from gateway.proxy.serve import running
from schemas.topics import KEYS, QUOTA_STATUS, UNMETERED, USAGE
from tests.support.kafka_io import consume_all, produce_records

pytestmark = pytest.mark.integration

STATUS = {"account_id": "acct-u", "status": "active", "allowed": True, "tier": "lite", "period": "monthly",
          "credits_limit": "4100000000", "credits_used": "0", "credits_remaining": "4100000000",
          "valid_from": "2026-12-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
          "as_of": {"computed_at": "2026-12-02T00:00:00Z", "event_time": None, "log": None, "source": None}}
REPLIES = {
    "none": {"id": "c1", "object": "chat.completion", "created": 0, "model": "MiMo-V2.5",
             "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]},
    "cached": {"id": "c2", "object": "chat.completion", "created": 0, "model": "MiMo-V2.5",
               "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6,
                         "prompt_tokens_details": {"cached_tokens": 50}}},
}


async def bad_upstream(request: web.Request) -> web.Response:
    kind = (await request.json())["messages"][0]["content"]
    return web.json_response(REPLIES[kind])


async def test_replies_without_consistent_usage_are_recorded_as_unmetered(kafka_bootstrap, tmp_path):
    namespace = Namespace()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", bad_upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    settings = GatewaySettings(bootstrap_servers=kafka_bootstrap, topic_prefix=namespace.topic_prefix,
                               key_secret_file=tmp_path / "secret", spool_dir=tmp_path / "spool", port=0,
                               upstream_url=upstream_url, worker_url="http://127.0.0.1:1")
    await ensure_topics(settings, [KEYS, QUOTA_STATUS, USAGE, UNMETERED])
    key = new_key()
    record = issued("key_u", "acct-u", hash_key(load_key_secret("", settings.key_secret_file), key), None,
                    datetime.now(timezone.utc))
    await produce_records(kafka_bootstrap, [
        (namespace.topic(KEYS), b"key_u", record.model_dump_json().encode()),
        (namespace.topic(QUOTA_STATUS), b"acct-u", orjson.dumps(STATUS)),
    ])
    try:
        async with running(settings) as (gateway, url):
            await asyncio.sleep(0.5)
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            for kind in ("none", "cached"):
                reply = await client.chat.completions.create(model="MiMo-V2.5",
                                                             messages=[{"role": "user", "content": kind}])
                assert reply.choices[0].message.content == "ok", "the reply is served unchanged"
            await client.close()
            async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
                metrics = await response.text()
    finally:
        await runner.cleanup()
    assert 'tokenplan_gateway_usage_errors_total{reason="usage_missing"} 1.0' in metrics
    assert 'tokenplan_gateway_usage_errors_total{reason="usage_cached_exceeds_prompt"} 1.0' in metrics
    unmetered = [orjson.loads(v) for _k, v in await consume_all(kafka_bootstrap, namespace.topic(UNMETERED), idle_s=1)]
    assert [(u["reason"], u["key_id"], u["account_id"]) for u in unmetered] == [
        ("usage_missing", "key_u", "acct-u"), ("usage_cached_exceeds_prompt", "key_u", "acct-u")]
    assert unmetered[1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 50}
    assert await consume_all(kafka_bootstrap, namespace.topic(USAGE), idle_s=0.5) == [], "never a zero charge"
