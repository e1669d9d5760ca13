"""Classifying requests: real tools' headers and bodies, the real SDKs' defaults, scripts, cadence."""
from __future__ import annotations

import importlib.resources
import re
from datetime import datetime, timezone

import anthropic
import openai
import orjson
import pytest
from anthropic._models import FinalRequestOptions as AnthropicOptions
from openai._models import FinalRequestOptions as OpenAIOptions

from gateway.policy import CadenceTracker, classify, load_policy_rules
from gateway.policy.body import PROMPT_TEXTS_MAX, prompt_texts, tool_names
from gateway.policy.cadence import (CADENCE_MIN_REQUESTS, CADENCE_WINDOW, MACHINE_CV_MAX, CadenceSummary,
                                    summarize)

RULES = load_policy_rules(datetime(2026, 12, 2, tzinfo=timezone.utc))
RULE_ID = re.compile(r"(ua|header):[a-z-]+|body:(agentic-system-prompt|coding-tool-names)"
                     r"|sdk-default(\+machine-cadence)?|default:unknown")


def packaged_data() -> dict:
    return orjson.loads(importlib.resources.files("gateway.policy").joinpath("tools.json").read_bytes())


def steady(count: int, interval: float = 1.0, key: str = "tp-key") -> CadenceSummary:
    """The cadence of a loop sending one request every `interval` seconds."""
    tracker = CadenceTracker()
    return [tracker.observe(key, 1000.0 + i * interval) for i in range(count)][-1]


def bursty() -> CadenceSummary:
    """An agent session: quick tool-call turns, then a long pause while the user reads."""
    tracker = CadenceTracker()
    instants = [0, 2, 3.5, 4, 9, 10, 11.2, 80, 82, 83, 84.5, 200, 201, 203, 260]
    return [tracker.observe("tp-key", float(t)) for t in instants][-1]


def openai_sdk_headers(client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, str]:
    """What the installed openai SDK really sends on a chat completion (lower-case names)."""
    built = client._build_headers(OpenAIOptions.construct(method="post", url="/chat/completions"))
    return {name.lower(): value for name, value in built.items()}


def anthropic_sdk_headers(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> dict[str, str]:
    built = client._build_headers(AnthropicOptions.construct(method="post", url="/v1/messages"))
    return {name.lower(): value for name, value in built.items()}


def sdk_header_sets() -> list[dict[str, str]]:
    return [openai_sdk_headers(openai.OpenAI(api_key="x")), openai_sdk_headers(openai.AsyncOpenAI(api_key="x")),
            anthropic_sdk_headers(anthropic.Anthropic(api_key="x")),
            anthropic_sdk_headers(anthropic.AsyncAnthropic(api_key="x"))]


# --- real tools' requests (header values from their public source, see tools.json) -----------

CLAUDE_CODE_HEADERS = {
    "user-agent": "claude-cli/2.0.76 (external, cli)", "x-app": "cli",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14", "anthropic-version": "2023-06-01",
    "x-stainless-lang": "js", "x-stainless-package-version": "0.70.0", "x-stainless-runtime": "node",
    "x-stainless-retry-count": "0", "x-stainless-helper-method": "stream",
}
CLAUDE_CODE_BODY = {
    "model": "MiMo-V2.5-Pro", "max_tokens": 32000, "stream": True,
    "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
               {"type": "text", "text": "You are an interactive CLI tool that helps users with software "
                                        "engineering tasks."}],
    "tools": [{"name": "Bash", "input_schema": {}}, {"name": "Read", "input_schema": {}},
              {"name": "Edit", "input_schema": {}}, {"name": "Glob", "input_schema": {}}],
    "messages": [{"role": "user", "content": "fix the failing test"}],
}
CODEX_HEADERS = {
    "user-agent": "codex_cli_rs/0.38.0 (Ubuntu 24.04.2 LTS; x86_64) WindowsTerminal", "originator": "codex_cli_rs",
    "version": "0.38.0", "session_id": "8f1f0b18-2fb3-4c24-9a9a-000000000000", "accept": "text/event-stream",
}
CODEX_BODY = {
    "model": "MiMo-V2.5", "stream": True,
    "instructions": "You are a coding agent running in the Codex CLI, a terminal-based coding assistant.",
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a test"}]}],
    "tools": [{"type": "function", "name": "shell"}, {"type": "function", "name": "apply_patch"},
              {"type": "function", "name": "update_plan"}],
}


def chat_body(system: str, *tools: str) -> dict:
    body = {"model": "MiMo-V2.5", "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": "hello"}]}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": name, "parameters": {}}} for name in tools]
    return body


PLAIN_BODY = chat_body("You are a helpful assistant.")

TOOL_REQUESTS = [
    pytest.param(CLAUDE_CODE_HEADERS, CLAUDE_CODE_BODY, "claude-code", "2.0.76", "ua:claude-code", id="claude-code"),
    pytest.param(CODEX_HEADERS, CODEX_BODY, "codex", "0.38.0", "ua:codex", id="codex-cli"),
    pytest.param({"user-agent": "opencode/1.0.150 ai-sdk/provider-utils/3.0.9 runtime/bun/1.3.0"}, PLAIN_BODY,
                 "opencode", "1.0.150", "ua:opencode", id="opencode"),
    pytest.param({"user-agent": "openclaw/2026.2.1", "originator": "openclaw", "version": "2026.2.1"}, PLAIN_BODY,
                 "openclaw", "2026.2.1", "ua:openclaw", id="openclaw"),
    pytest.param({"user-agent": "Cline/3.40.0", "http-referer": "https://cline.bot", "x-title": "Cline"},
                 PLAIN_BODY, "cline", "3.40.0", "ua:cline", id="cline"),
    pytest.param({"user-agent": "RooCode/3.25.0", "http-referer": "https://github.com/RooVetGit/Roo-Cline",
                  "x-title": "Roo Code"}, PLAIN_BODY, "roo-code", "3.25.0", "ua:roo-code", id="roo-code"),
    pytest.param({"user-agent": "Kilo-Code/4.80.0", "x-kilocode-version": "4.80.0", "x-title": "Kilo Code",
                  "http-referer": "https://kilocode.ai"}, PLAIN_BODY, "kilo-code", "4.80.0", "ua:kilo-code",
                 id="kilo-code"),
    pytest.param({"user-agent": "GeminiCLI/0.9.0/gemini-2.5-pro (linux; x64)"}, PLAIN_BODY, "gemini-cli", "0.9.0",
                 "ua:gemini-cli", id="gemini-cli"),
    pytest.param({"user-agent": "QwenCode/0.0.14 (linux; x64)"}, PLAIN_BODY, "qwen-code", "0.0.14",
                 "ua:qwen-code", id="qwen-code"),
    pytest.param({"user-agent": "Charm-Crush/v0.10.1 (https://charm.land/crush)"}, PLAIN_BODY, "crush", "v0.10.1",
                 "ua:crush", id="crush"),
    pytest.param({"user-agent": "Zed/0.205.4 (macos; aarch64)"}, PLAIN_BODY, "zed", "0.205.4", "ua:zed", id="zed"),
    # Cline's OpenRouter-style providers: the attribution headers, with the OpenAI JS SDK's UA.
    pytest.param({"user-agent": "OpenAI/JS 4.96.0", "x-stainless-lang": "js", "http-referer": "https://cline.bot",
                  "x-title": "Cline", "x-cline-version": "3.17.0"}, PLAIN_BODY, "cline", "3.17.0", "header:cline",
                 id="cline-headers"),
    # Claude Code behind a proxy that rewrote the User-Agent: its beta and x-app headers remain.
    pytest.param({**CLAUDE_CODE_HEADERS, "user-agent": "python-httpx/0.28.1"}, {"model": "m"}, "claude-code", None,
                 "header:claude-code", id="claude-code-proxied"),
]


@pytest.mark.parametrize(("headers", "body", "tool", "version", "rule"), TOOL_REQUESTS)
def test_known_tools_are_coding_tools_with_name_and_version(headers, body, tool, version, rule):
    decision = classify(headers, body, steady(20), RULES)
    assert (decision.kind, decision.tool, decision.tool_version, decision.rule) == ("coding_tool", tool, version, rule)
    assert decision.unambiguous and decision.rules_version == RULES.version


# --- tools recognised by their body (they send an SDK's default headers) ---------------------

BODY_REQUESTS = [
    pytest.param(chat_body("Act as an expert software developer.\nAlways use best practices when coding."),
                 "aider", id="aider"),
    pytest.param(chat_body("You are Cline, a highly skilled software engineer with extensive knowledge in many "
                           "programming languages, frameworks, design patterns, and best practices."),
                 "cline", id="cline-openai-compatible"),
    pytest.param({"model": "m", "messages": [{"role": "user", "content": "You are Roo, a highly skilled software "
                                                                         "engineer with extensive knowledge"}]},
                 "roo-code", id="roo-r1-format-first-user-turn"),
    pytest.param({"model": "m", "system": "You are OpenCode, the best coding agent on the planet.",
                  "messages": []}, "opencode", id="opencode-anthropic-provider"),
    pytest.param({"model": "m", "system": [{"type": "text", "text": "You are a personal assistant running inside "
                                                                     "OpenClaw."}], "messages": []},
                 "openclaw", id="openclaw-pi-ai"),
    pytest.param({"model": "m", "input": [{"type": "message", "role": "developer", "content": [
        {"type": "input_text", "text": "You are a coding agent running in the Codex CLI."}]}]}, "codex",
                 id="codex-developer-message"),
    pytest.param(chat_body("You are goose, an AI agent created by Block (Square, CashApp, Tidal)."), "goose",
                 id="goose"),
    pytest.param(chat_body("You are an interactive CLI agent specializing in software engineering tasks."), None,
                 id="gemini-cli-family-unnamed"),
]


@pytest.mark.parametrize(("body", "tool"), BODY_REQUESTS)
def test_agentic_system_prompts_make_sdk_traffic_a_coding_tool(body, tool):
    """Aider (litellm -> the openai SDK) and Cline's OpenAI-compatible provider send the SDK's
    default headers; even at a machine-like cadence their system prompt decides."""
    for headers in sdk_header_sets():
        decision = classify(headers, body, steady(20), RULES)
        assert (decision.kind, decision.tool, decision.rule) == ("coding_tool", tool, "body:agentic-system-prompt")


def test_two_coding_tool_names_are_an_agent_one_is_not():
    continue_agent = chat_body("You are in agent mode.", "builtin_read_file", "builtin_run_terminal_command")
    decision = classify(openai_sdk_headers(openai.OpenAI(api_key="x")), continue_agent, steady(20), RULES)
    assert (decision.kind, decision.tool, decision.rule) == ("coding_tool", None, "body:coding-tool-names")
    anthropic_tools = {"model": "m", "tools": [{"type": "bash_20250124", "name": "bash"},
                                               {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]}
    assert classify({"user-agent": "curl/8.5.0"}, anthropic_tools, steady(20), RULES).kind == "coding_tool"
    one_tool = chat_body("You extract invoices.", "read_file", "send_invoice")
    assert classify({"user-agent": "curl/8.5.0"}, one_tool, steady(20), RULES).rule == "ua:curl"


def test_coding_markers_beat_a_bare_client_user_agent():
    """An agent on a bare HTTP client at a loop-like cadence still sends its agent prompt: coding wins."""
    body = {**CLAUDE_CODE_BODY, "tools": []}
    decision = classify({"user-agent": "python-requests/2.32.3"}, body, steady(20), RULES)
    assert (decision.kind, decision.tool, decision.rule) == ("coding_tool", "claude-code", "body:agentic-system-prompt")
    headers = {"user-agent": "curl/8.5.0", "x-title": "Kilo Code", "x-kilocode-version": "4.80.0"}
    assert classify(headers, PLAIN_BODY, steady(20), RULES).tool == "kilo-code"


# --- the real SDKs' defaults -------------------------------------------------------------------

def test_the_installed_sdks_send_their_class_name_as_user_agent_and_stainless_headers():
    """What `sdk_defaults` matches, read from openai 3.57.0 / anthropic 2.16.0 themselves."""
    agents = [headers["user-agent"] for headers in sdk_header_sets()]
    assert agents == [f"OpenAI/Python {openai.__version__}", f"AsyncOpenAI/Python {openai.__version__}",
                      f"Anthropic/Python {anthropic.__version__}", f"AsyncAnthropic/Python {anthropic.__version__}"]
    for headers in sdk_header_sets():
        assert headers["x-stainless-lang"] == "python" and "x-stainless-package-version" in headers
        assert {"x-stainless-os", "x-stainless-arch", "x-stainless-runtime", "x-stainless-async",
                "x-stainless-retry-count"} <= headers.keys()


@pytest.mark.parametrize("headers", sdk_header_sets(), ids=["openai", "async-openai", "anthropic", "async-anthropic"])
def test_sdk_defaults_are_non_coding_only_with_a_machine_cadence_and_never_unambiguous(headers):
    for cadence in (None, steady(1), steady(CADENCE_MIN_REQUESTS - 1), bursty()):
        decision = classify(headers, PLAIN_BODY, cadence, RULES)
        assert (decision.kind, decision.rule, decision.unambiguous) == ("unknown", "sdk-default", False)
    decision = classify(headers, PLAIN_BODY, steady(20), RULES)
    assert (decision.kind, decision.rule, decision.unambiguous) == ("non_coding", "sdk-default+machine-cadence", False)


def test_js_sdk_defaults_are_recognised_too():
    for agent in ("OpenAI/JS 4.96.0", "Anthropic/JS 0.60.0"):
        assert classify({"user-agent": agent, "x-stainless-lang": "js"}, PLAIN_BODY, steady(20), RULES).rule == \
            "sdk-default+machine-cadence"


# --- scripts -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("agent", "rule"), [("python-requests/2.32.3", "ua:python-requests"),
                                             ("curl/8.5.0", "ua:curl"), ("Wget/1.21.4", "ua:wget"),
                                             ("Go-http-client/1.1", "ua:go-http-client"), ("axios/1.7.9", "ua:axios"),
                                             ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "ua:node-fetch"),
                                             ("okhttp/4.12.0", "ua:okhttp"), ("Python/3.11 aiohttp/3.14.5", "ua:aiohttp"),
                                             ("python-httpx/0.28.1", "ua:httpx"),
                                             ("PostmanRuntime/7.43.0", "ua:postman"), ("Java/17.0.2", "ua:java"),
                                             ("Java-http-client/21.0.1", "ua:java")])
def test_a_bare_client_at_a_steady_cadence_is_unambiguously_non_coding(agent, rule):
    decision = classify({"user-agent": agent}, PLAIN_BODY, steady(20, interval=1.0), RULES)
    assert (decision.kind, decision.rule, decision.unambiguous) == ("non_coding", rule, True)
    assert (decision.tool, decision.tool_version) == (None, None)


def test_a_bare_client_without_a_machine_cadence_is_non_coding_but_not_unambiguous():
    for cadence in (None, steady(1), bursty()):
        decision = classify({"user-agent": "python-requests/2.32.3"}, PLAIN_BODY, cadence, RULES)
        assert (decision.kind, decision.unambiguous) == ("non_coding", False)


@pytest.mark.parametrize("headers", [{}, {"user-agent": ""}, {"user-agent": "Mozilla/5.0"},
                                     {"user-agent": "litellm/1.77.0"}, *sdk_header_sets()])
def test_a_single_request_is_never_unambiguously_non_coding(headers):
    """One arrival says nothing about a rhythm: cadence alone can never condemn it."""
    decision = classify(headers, PLAIN_BODY, CadenceTracker().observe("tp-new", 5.0), RULES)
    assert not (decision.kind == "non_coding" and decision.unambiguous)
    assert decision.kind != "non_coding" or decision.rule.startswith("ua:")


def test_anything_else_is_unknown_even_at_a_machine_cadence():
    for headers in ({}, {"user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}, {"user-agent": "my-backend/2.1"}):
        decision = classify(headers, PLAIN_BODY, steady(20), RULES)
        assert (decision.kind, decision.rule, decision.unambiguous) == ("unknown", "default:unknown", False)


def test_every_decision_records_the_rules_version_and_a_known_rule_id():
    cases = [(p.values[0], p.values[1]) for p in TOOL_REQUESTS] + [({}, p.values[0]) for p in BODY_REQUESTS]
    cases += [({"user-agent": "curl/8.5.0"}, PLAIN_BODY), (sdk_header_sets()[0], PLAIN_BODY), ({}, PLAIN_BODY)]
    for headers, body in cases:
        for cadence in (None, steady(20)):
            decision = classify(headers, body, cadence, RULES)
            assert decision.rules_version == "coding-tools-2026-12"
            assert RULE_ID.fullmatch(decision.rule), decision.rule


# --- the rules data ----------------------------------------------------------------------------

def test_the_packaged_rules_are_versioned_and_every_tool_cites_a_source():
    data = packaged_data()
    for version in data["versions"]:
        for tool in version["coding_tools"]:
            assert tool["source"] and (tool["user_agent"] or tool["headers"] or tool["system_prompt"]), tool["id"]
    for tool in RULES.tools:
        assert tool.user_agent is None or tool.user_agent.groups == 1, tool.id


def test_the_version_in_effect_is_chosen_by_effective_from():
    base = packaged_data()
    old = {**base["versions"][0], "version": "old", "effective_from": "2026-01-01T00:00:00Z"}
    new = {**base["versions"][0], "version": "new", "effective_from": "2027-01-01T00:00:00+08:00"}
    text = orjson.dumps({"versions": [new, old]})
    assert load_policy_rules(datetime(2026, 6, 1, tzinfo=timezone.utc), text).version == "old"
    assert load_policy_rules(datetime(2026, 12, 31, 16, tzinfo=timezone.utc), text).version == "new"
    assert load_policy_rules(datetime(2020, 1, 1, tzinfo=timezone.utc), text).version == "old"


# --- body reading ------------------------------------------------------------------------------

def test_prompt_texts_cover_the_three_request_shapes_and_are_bounded():
    assert prompt_texts({"system": "S"}) == ["s"]
    assert prompt_texts({"instructions": "I", "input": [{"role": "developer", "content": [{"text": "D"}]}]}) == \
        ["i", "d"]
    assert prompt_texts({"messages": [{"role": "user", "content": "U0"}, {"role": "user", "content": "U1"},
                                      {"role": "system", "content": [{"type": "text", "text": "S"}]}]}) == ["u0", "s"]
    assert len(prompt_texts({"system": [{"text": "x"}] * 50})) == PROMPT_TEXTS_MAX
    assert prompt_texts({"system": 3, "messages": "nope"}) == []
    assert tool_names({"tools": [{"function": {"name": "Bash"}}, {"name": "Read"}, "x", {"name": 3}]}) == \
        {"bash", "read"}


# --- cadence -----------------------------------------------------------------------------------

def test_a_steady_rhythm_is_machine_like_from_the_minimum_number_of_requests():
    assert not steady(CADENCE_MIN_REQUESTS - 1).machine_like
    summary = steady(CADENCE_MIN_REQUESTS)
    assert (summary.requests, summary.mean_interval_s, summary.cv, summary.machine_like) == (10, 1.0, 0.0, True)


def test_a_cron_with_jitter_is_machine_like_and_an_agent_session_is_not():
    jitter = [0.0, 0.03, -0.04, 0.02, 0.05, -0.01, 0.0, -0.05, 0.04, -0.02, 0.01, 0.03]
    summary = summarize([60.0 * i + j for i, j in enumerate(jitter)])
    assert summary.machine_like and summary.cv < MACHINE_CV_MAX
    session = bursty()
    assert not session.machine_like and session.cv > 1.0


def test_cadence_edge_cases_have_no_rhythm():
    assert summarize([]) == CadenceSummary(0, None, None, False)
    assert summarize([5.0]) == CadenceSummary(1, None, None, False)
    assert summarize([7.0] * 12) == CadenceSummary(12, 0.0, None, False)  # parallel, not a rhythm
    assert summarize([3.0, 1.0, 2.0]).mean_interval_s == 1.0  # out-of-order instants


def test_the_tracker_keeps_a_bounded_window_per_key():
    tracker = CadenceTracker()
    summaries = [tracker.observe("k", float(i)) for i in range(CADENCE_WINDOW + 15)]
    assert summaries[-1].requests == CADENCE_WINDOW
    # A loop that turns bursty stops looking machine-like once the window has moved on.
    for t in (100, 100.1, 140, 141, 300, 300.5, 301, 420, 500, 500.2, 600, 900, 901, 902, 1200, 1201, 1500, 1501,
              1502, 2000):
        last = tracker.observe("k", float(t))
    assert not last.machine_like


def test_the_tracker_forgets_the_least_recently_seen_key_beyond_its_limit():
    tracker = CadenceTracker(keys_max=2)
    tracker.observe("a", 0.0)
    tracker.observe("b", 0.0)
    tracker.observe("a", 1.0)  # a is now the most recent
    tracker.observe("c", 0.0)  # evicts b
    assert len(tracker) == 2
    assert tracker.observe("a", 2.0).requests == 3
    assert tracker.observe("b", 5.0).requests == 1  # b starts over (and evicts c)
