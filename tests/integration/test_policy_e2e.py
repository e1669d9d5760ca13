"""The usage policy end to end: real SDKs -> gateway (classify) -> policy.violation -> worker fold
-> warning, suspension -> the SDK's permission error; reinstatement; a worker restart in between.

Thresholds are lowered for the test (warn after 3 non-coding requests, suspend after 6, no
grace period); the rules are the packaged ones.
"""
from __future__ import annotations

import asyncio
import uuid

import anthropic
import openai
import orjson
import pytest
from sqlalchemy import select

from deploy.localrun import WorkerProcess, gateway_process, upstream_sim
from streams.audit.policy_replay import replay_policy
from streams.config import policy_limits_from_env
from schemas.topics import KEY_STATUS, POLICY, POLICY_FACTS
from projections.projector import Projector
from projections.tables import alerts, webhook_deliveries
from tests.integration.test_gateway_e2e import CLIENTS, buy, close_clients, issue, keys_cli, until_key_known  # noqa: F401
from tests.integration.test_projector_e2e import SECRET, read, run_until, settings_for, webhook_receiver
from tests.support.kafka_io import consume_all

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
POLICY_ENV = {"TOKENPLAN_POLICY_WARN_AFTER": "3", "TOKENPLAN_POLICY_SUSPEND_AFTER": "6",
              "TOKENPLAN_POLICY_GRACE_S": "0", "TOKENPLAN_ADMIN_TOKEN": ADMIN_TOKEN}
MODEL = "MiMo-V2.5"
CLAUDE_CODE = "claude-cli/2.0.14 (external, cli)"
SCRIPT = "python-requests/2.32.3"
#: A steady pause between a script's requests (machine cadence: low jitter).
SCRIPT_PAUSE_S = 0.25


@pytest.fixture(scope="module")
def policy_stack(kafka_bootstrap, ns, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("policy")
    worker = WorkerProcess(kafka_bootstrap, ns, data_dir / "w0", extra_env=POLICY_ENV).start()
    worker.wait_healthy()
    sim = upstream_sim(data_dir).start()
    sim.wait_ready()
    gateway = gateway_process(kafka_bootstrap, ns, worker.url, sim.url, data_dir).start()
    gateway.wait_ready()
    state = {"worker": worker}
    yield state, gateway, data_dir
    gateway.stop()
    sim.stop()
    state["worker"].stop()


def claude_code(gateway, key: str) -> anthropic.AsyncAnthropic:
    CLIENTS.append(anthropic.AsyncAnthropic(base_url=f"{gateway.url}/anthropic", api_key=key, max_retries=0,
                                            default_headers={"User-Agent": CLAUDE_CODE}))
    return CLIENTS[-1]


def script(gateway, key: str) -> openai.AsyncOpenAI:
    CLIENTS.append(openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0,
                                      default_headers={"User-Agent": SCRIPT}))
    return CLIENTS[-1]


async def facts_of(kafka_bootstrap, ns, key_id: str, short: str = POLICY_FACTS) -> list[dict]:
    records = await consume_all(kafka_bootstrap, ns.topic(short), idle_s=0.5)
    return [body for body in (orjson.loads(v) for _k, v in records if v) if body.get("key_id") == key_id]


async def test_coding_tools_are_never_suspended_and_scripts_are_warned_then_suspended_then_reinstated(
        kafka_bootstrap, ns, policy_stack):
    state, gateway, data_dir = policy_stack
    account = f"pol-{uuid.uuid4().hex[:6]}"
    await buy(kafka_bootstrap, ns, state["worker"], account)
    tool_key, tool_key_id = issue(kafka_bootstrap, ns, data_dir, account)
    script_key, script_key_id = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, tool_key)
    await until_key_known(gateway, script_key)

    coding = claude_code(gateway, tool_key)
    system = "You are Claude Code, Anthropic's official CLI for Claude."
    opencode = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=tool_key, max_retries=0,
                                  default_headers={"User-Agent": "opencode/0.15.3"})
    CLIENTS.append(opencode)
    for turn in range(12):  # agents' steady loops of tool calls: still coding
        await coding.messages.create(model=MODEL, max_tokens=16, system=system,
                                     messages=[{"role": "user", "content": f"step {turn}: run the tests"}])
        await opencode.chat.completions.create(model=MODEL, max_tokens=8,
                                               messages=[{"role": "user", "content": f"edit {turn}"}])
        await asyncio.sleep(SCRIPT_PAUSE_S)

    client = script(gateway, script_key)
    error = None
    for i in range(40):
        try:
            await client.chat.completions.create(model=MODEL, max_tokens=8,
                                                 messages=[{"role": "user", "content": f"summarise order {i}"}])
        except openai.PermissionDeniedError as refused:
            error = refused
            break
        await asyncio.sleep(SCRIPT_PAUSE_S)
    assert error is not None, "the script's key is suspended within 40 requests"
    assert "suspended" in str(error) and "appeal" in str(error).lower()

    facts = await facts_of(kafka_bootstrap, ns, script_key_id)
    assert [f["type"] for f in facts] == ["policy.warning", "key.suspended"], "a warning first"
    assert facts[1]["violations"] >= 6 and all(r.startswith("ua:") for r in facts[1]["rules"])
    assert await facts_of(kafka_bootstrap, ns, tool_key_id) == [], "the coding tool is never warned"
    violations = await facts_of(kafka_bootstrap, ns, tool_key_id, POLICY)
    assert violations == [], "no coding request is a violation"
    # The account's other key keeps working.
    await coding.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "still here?"}])

    # The Anthropic SDK with its own default User-Agent (no tool marker) at a machine cadence.
    backend_key, backend_key_id = issue(kafka_bootstrap, ns, data_dir, account)
    await until_key_known(gateway, backend_key)
    backend = anthropic.AsyncAnthropic(base_url=f"{gateway.url}/anthropic", api_key=backend_key, max_retries=0)
    CLIENTS.append(backend)
    denied = None
    for i in range(40):
        try:
            await backend.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": f"row {i}"}])
        except anthropic.PermissionDeniedError as refused:
            denied = refused
            break
        await asyncio.sleep(SCRIPT_PAUSE_S)
    assert denied is not None and "suspended" in str(denied)
    backend_facts = await facts_of(kafka_bootstrap, ns, backend_key_id)
    assert [f["type"] for f in backend_facts] == ["policy.warning", "key.suspended"]
    assert set(backend_facts[1]["rules"]) == {"sdk-default+machine-cadence"}

    shown = keys_cli(kafka_bootstrap, ns, data_dir, "show", script_key_id)
    history = orjson.loads(shown.stdout)
    assert history["policy_status"] == "suspended" and history["violations"]["count"] >= 6
    assert [e["type"] for e in history["events"]] == ["policy.warning", "key.suspended"]

    # The suspension is table state: it survives a worker restart (fresh data dir: changelog recovery).
    state["worker"].stop()
    state["worker"] = WorkerProcess(kafka_bootstrap, ns, data_dir / "w1", extra_env=POLICY_ENV).start()
    state["worker"].wait_healthy()
    refused = keys_cli(kafka_bootstrap, ns, data_dir, "reinstate", script_key_id, "--reason", "appeal accepted",
                       "--worker", state["worker"].url)
    assert refused.returncode == 1 and "admin token" in refused.stderr, "no admin token, no reinstatement"
    done = keys_cli(kafka_bootstrap, ns, data_dir, "reinstate", script_key_id, "--reason", "appeal accepted",
                    "--worker", state["worker"].url, env={"TOKENPLAN_ADMIN_TOKEN": ADMIN_TOKEN})
    assert done.returncode == 0, done.stderr
    restored = await _served_again(gateway, script_key)
    assert restored, "reinstatement restores service"
    statuses = await facts_of(kafka_bootstrap, ns, script_key_id, KEY_STATUS)
    assert [s["status"] for s in statuses] == ["suspended", "active"], \
        "the restarted worker knew the key was suspended (it published the change back to active)"
    assert (await facts_of(kafka_bootstrap, ns, script_key_id))[-1]["message"].endswith("appeal accepted")

    # A replay of tokenplan.policy gives the same decisions as the live worker (across its restart).
    log = [v for _k, v in await consume_all(kafka_bootstrap, ns.topic(POLICY), idle_s=0.5)]
    replayed, states = replay_policy(log, policy_limits_from_env(POLICY_ENV))
    live = [orjson.loads(v) for _k, v in await consume_all(kafka_bootstrap, ns.topic(POLICY_FACTS), idle_s=0.5)]
    assert [f.model_dump(mode="json") for f in replayed] == live
    assert not states[script_key_id].suspended and states[backend_key_id].suspended

    # The account hears of it through the alert channel: the projector's alerts on Kafka and at the webhook.
    await _policy_alerts_reach_the_account(kafka_bootstrap, ns, data_dir, {script_key_id, backend_key_id})


async def _policy_alerts_reach_the_account(kafka_bootstrap, ns, data_dir, key_ids: set[str]) -> None:
    url = f"sqlite:///{data_dir / 'projections.db'}"
    runner, hook, seen = await webhook_receiver(fail_first=0)
    expected = {(kind, key) for key in key_ids for kind in ("policy.warning", "key.suspended")}
    projector = Projector(settings_for(kafka_bootstrap, ns, url, webhook_url=hook, webhook_secret=SECRET))

    def policy_alerts() -> set[tuple[str, str]]:
        try:
            rows = read(url, select(alerts.c.kind, alerts.c.key_id).join(
                webhook_deliveries, webhook_deliveries.c.alert_id == alerts.c.alert_id).where(
                alerts.c.key_id.in_(key_ids), webhook_deliveries.c.status == "delivered"))
        except Exception:  # the tables are not created yet
            return set()
        return {(row.kind, row.key_id) for row in rows}
    try:
        await run_until(projector, lambda: policy_alerts() == expected)
    finally:
        await runner.cleanup()
    published = [orjson.loads(v) for _k, v in await consume_all(kafka_bootstrap, ns.topic("alerts"), idle_s=0.5)]
    on_kafka = {(a["kind"], a["key_id"]) for a in published if a["type"] == "policy.alert"}
    assert on_kafka == expected, "a warning and a suspension per script key, nothing for the coding tool"
    hooked = [hit for hit in seen if hit["body"]["type"] == "policy.alert"]
    assert all(hit["ok"] for hit in hooked) and {(h["body"]["kind"], h["body"]["key_id"]) for h in hooked} == expected
    assert all(h["body"]["request_event_ids"] and h["body"]["message"] for h in hooked)


async def _served_again(gateway, key: str, timeout_s: float = 20.0) -> bool:
    client = script(gateway, key)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            await client.chat.completions.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
            return True
        except openai.PermissionDeniedError:
            await asyncio.sleep(0.3)
    return False
