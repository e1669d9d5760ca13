"""`tokenplan gateway-traffic`: coding tools' traffic through the gateway, with the real SDKs.

Why real SDKs and not events written to Kafka: the ledger must then meter what a
gateway really saw (the SDK's headers, the upstream's usage, streamed or not), and a
refusal reaches the user as the SDK's own exception. Each simulated account buys a
plan (a plan.purchased on `plans`, as billing would), gets a key the way a user does
(`gateway.cli.keys.issue_keys`), and then one coding tool works in it: a long system
prompt repeated on every request (the upstream reports it as cached), a conversation
that grows turn by turn, then a new one. With `exhaust`, one more account on a lite
plan pastes huge files into MiMo-V2-Pro until the gateway refuses it with 429.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import aiohttp
import anthropic
import openai
from rich.console import Console

from gateway.cli.keys import issue_keys
from gateway.config import GatewaySettings
from gateway.kafka import idempotent_producer
from gateway.proxy.refusals import MESSAGES
from schemas.events import PlanPurchased, format_instant
from schemas.topics import PLANS

__all__ = ["TOOLS", "Tool", "TrafficConfig", "TrafficReport", "run_traffic"]

Api = Literal["chat", "responses", "messages"]


@dataclass(frozen=True)
class Tool:
    """A coding tool as the gateway sees it: its User-Agent and the API it speaks."""

    name: str
    user_agent: str
    api: Api

    @property
    def protocol(self) -> str:
        return "anthropic" if self.api == "messages" else "openai"


#: Accounts take these in turn (so two accounts already cover both protocols).
TOOLS: tuple[Tool, ...] = (
    Tool("claude-code", "claude-cli/2.0.14 (external, cli)", "messages"),
    Tool("opencode", "opencode/0.15.3", "chat"),
    Tool("codex", "codex_cli_rs/0.46.0", "responses"),
)
#: Everyday models, weighted towards the cheap flagship.
MODELS = ("MiMo-V2.5", "MiMo-V2.5", "MiMo-V2.5-Pro", "MiMo-V2-Omni")
#: The most expensive model (700 credits per input token missed): exhausts a plan fastest.
EXHAUST_MODEL = "MiMo-V2-Pro"
#: A pasted dump of ~150k tokens: ~1e8 credits per request, so a lite pool (4.1e9) lasts
#: ~40-50 requests. Below upstream-sim's 1 MiB body limit.
EXHAUST_PROMPT_BYTES = 600_000
EXHAUST_MAX_TOKENS = 32_000
#: Between exhaust requests (they are sequential): ~45 requests, used up in about half a
#: minute, slow enough to watch the credits fall.
EXHAUST_PAUSE_S = 0.5
#: After the refusal, the exhausted tool retries this rarely (it stays refused).
EXHAUST_PROBE_S = 5.0
#: A conversation starts over after this many user turns.
TURNS_MAX = 8
#: Time limits of the set-up waits (purchase applied, key followed by the gateway).
READY_TIMEOUT_S = 60.0
TIERS = ("lite", "standard", "pro", "max")


@dataclass(frozen=True)
class TrafficConfig:
    """What to simulate (the command's options)."""

    gateway_url: str = "http://127.0.0.1:8080"
    worker_url: str = "http://127.0.0.1:6066"
    accounts: int = 6
    rate: float = 4.0
    seconds: float = 0.0
    exhaust: bool = False
    tier: str | None = None  # None: the accounts take the tiers in turn
    report_every_s: float = 3.0
    #: End the run as soon as the exhausted account is refused (tests, demos).
    stop_when_exhausted: bool = False
    exhaust_pause_s: float = EXHAUST_PAUSE_S
    seed: int = 12


@dataclass
class Account:
    """One simulated user: the plan bought, the key issued, the tool used."""

    account_id: str
    tier: str
    tool: Tool
    exhausting: bool = False
    key: str = field(default="", repr=False)
    key_id: str = ""


@dataclass
class Tally:
    """What happened so far, for the live line and the final report."""

    served: Counter = field(default_factory=Counter)  # protocol -> replies
    refused: Counter = field(default_factory=Counter)  # reason -> refusals
    errors: Counter = field(default_factory=Counter)  # kind -> other failures
    refused_by_account: dict[str, Counter] = field(default_factory=dict)
    quota: dict[str, dict] = field(default_factory=dict)  # account -> last worker lookup body

    def refuse(self, account_id: str, reason: str) -> None:
        self.refused[reason] += 1
        self.refused_by_account.setdefault(account_id, Counter())[reason] += 1


@dataclass
class TrafficReport:
    """The run's outcome: the accounts, the tally, and how the exhausted account was stopped."""

    accounts: list[Account]
    tally: Tally
    exhausted_account: str | None = None
    exhausted_status: int | None = None
    exhausted_error: str | None = None  # "openai.RateLimitError: <the message the user reads>"
    exhausted_after_s: float | None = None


# --------------------------------------------------------------------------- prompts (pure)

_RULES = (
    "Read files before editing them; never guess at their contents.",
    "Prefer small, reviewable diffs; keep the existing style of the code base.",
    "Run the tests after each change and report failures verbatim.",
    "Never commit secrets, keys or credentials; refuse to print them.",
    "Explain briefly what you changed and why, then stop.",
    "Use the shell tool for git, the edit tool for files, the search tool for code.",
    "When a command fails, read its error output before trying again.",
    "Ask before deleting files or rewriting history.",
)
TASKS = (
    "The test tests/test_parser.py::test_nested_quotes fails since the last merge. Find out why and fix it.",
    "Add type hints to src/storage/io.py and make mypy pass.",
    "Refactor the retry loop in src/client/http.py into a small function with exponential backoff.",
    "Our CLI prints a traceback when the config file is missing. Make it print a one-line error instead.",
    "Write unit tests for src/billing/invoice.py covering rounding of half cents.",
    "Profile the import time of the package and remove the slowest unused import.",
    "Rename the module utils/helpers.py to utils/text.py and update every import.",
)
FOLLOW_UPS = (
    "Run the tests again, please.", "Good. Now update the changelog.", "That broke the linter; fix it.",
    "Can you make the error message clearer?", "Also handle the empty-input case.",
)


def system_prompt(tool: Tool) -> str:
    """The tool's long, fixed system prompt (~6.6 KB): identical on every request, so cached."""
    rules = "\n".join(f"{n}. {rule}" for n, rule in enumerate(itertools.islice(itertools.cycle(_RULES), 96), 1))
    return (f"You are {tool.name}, an interactive command-line coding agent working in the user's repository.\n"
            f"Follow these rules strictly:\n{rules}\n")


def source_file(rng: random.Random, lines: int) -> str:
    """Plausible Python source, as a tool result the agent read."""
    names = ("parse", "load", "retry", "render", "invoice", "token", "cache", "commit")
    body = []
    for index in range(lines // 3):
        name = f"{rng.choice(names)}_{rng.choice(names)}_{index}"
        body.append(f"def {name}(value, *, limit={rng.randint(1, 99)}):\n"
                    f"    return [item for item in value if item.score > limit]  # {rng.random():.6f}\n")
    return "\n".join(body)


class Conversation:
    """One coding session: user turns, tool results and replies, growing until TURNS_MAX."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.messages: list[dict[str, str]] = []
        self.turns = 0

    def next_messages(self) -> list[dict[str, str]]:
        """The history plus this turn's user message (a task, a file read, or a follow-up)."""
        if self.turns >= TURNS_MAX:
            self.messages, self.turns = [], 0
        if not self.messages:
            text = self.rng.choice(TASKS)
        elif self.turns % 2:
            path = f"src/{self.rng.choice(('parser', 'client', 'billing', 'storage'))}/module.py"
            text = f"Tool result (read {path}):\n```python\n{source_file(self.rng, self.rng.randint(30, 150))}```"
        else:
            text = self.rng.choice(FOLLOW_UPS)
        self.turns += 1
        return [*self.messages, {"role": "user", "content": text}]

    def answered(self, sent: list[dict[str, str]], reply: str) -> None:
        """Keep the turn and the reply: the next request re-sends all of it (a cached prefix)."""
        self.messages = [*sent, {"role": "assistant", "content": reply or "(no text)"}]


def dump_text(rng: random.Random, size: int) -> str:
    """A huge pasted file (generated once; each request makes it unique with a header)."""
    chunks, total = [], 0
    while total < size:
        chunk = source_file(rng, 60)
        chunks.append(chunk)
        total += len(chunk)
    return "".join(chunks)[:size]


# --------------------------------------------------------------------------- one request (SDK)

class Clients:
    """The SDK clients of one account, pointed at the gateway like a coding tool's config."""

    def __init__(self, gateway_url: str, account: Account) -> None:
        headers = {"User-Agent": account.tool.user_agent}
        # max_retries=0: a refusal shows at once instead of being retried behind our back.
        self.openai = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=account.key, max_retries=0,
                                         default_headers=headers, timeout=120)
        self.anthropic = anthropic.AsyncAnthropic(base_url=f"{gateway_url}/anthropic", api_key=account.key,
                                                  max_retries=0, default_headers=headers, timeout=120)

    async def close(self) -> None:
        await self.openai.close()
        await self.anthropic.close()


async def send(clients: Clients, tool: Tool, model: str, system: str, messages: list[dict[str, str]],
               max_tokens: int, stream: bool) -> str:
    """One request of `tool` through its SDK; the reply text. Refusals raise the SDK's errors."""
    if tool.api == "messages":
        blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        if stream:
            async with clients.anthropic.messages.stream(model=model, max_tokens=max_tokens, system=blocks,
                                                         messages=messages) as events:
                message = await events.get_final_message()
        else:
            message = await clients.anthropic.messages.create(model=model, max_tokens=max_tokens, system=blocks,
                                                              messages=messages)
        return "".join(block.text for block in message.content if block.type == "text")
    if tool.api == "responses":  # upstream-sim serves the Responses API whole only
        response = await clients.openai.responses.create(model=model, instructions=system, input=messages,
                                                         max_output_tokens=max_tokens)
        return response.output_text
    chat = [{"role": "system", "content": system}, *messages]
    if stream:
        chunks = await clients.openai.chat.completions.create(model=model, messages=chat, max_tokens=max_tokens,
                                                              stream=True, stream_options={"include_usage": True})
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    completion = await clients.openai.chat.completions.create(model=model, messages=chat, max_tokens=max_tokens)
    return completion.choices[0].message.content or ""


def refusal_reason(error: openai.APIStatusError | anthropic.APIStatusError) -> str:
    """The gateway's reason: OpenAI bodies carry it as `code`; Anthropic's by its message."""
    code = getattr(error, "code", None)
    if code in MESSAGES:
        return code
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error", body)
    message = inner.get("message") if isinstance(inner, dict) else None
    return next((reason for reason, text in MESSAGES.items() if text == message), f"http_{error.status_code}")


def user_message(error: Exception) -> str:
    """What the user of the tool reads: the SDK's exception class and the gateway's message."""
    body = getattr(error, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return f"{type(error).__module__.split('.')[0]}.{type(error).__name__}: {message or error}"


# --------------------------------------------------------------------------- the run

class Traffic:
    """One run: set-up, the tools' loops, the live line; `report` at the end."""

    def __init__(self, config: TrafficConfig, settings: GatewaySettings, console: Console, stop: asyncio.Event) -> None:
        self.config, self.settings, self.console, self.stop = config, settings, console, stop
        self.rng = random.Random(config.seed)
        self.run_id = f"gt{datetime.now(timezone.utc):%H%M%S}{self.rng.randrange(16**4):04x}"
        self.accounts = self._accounts()
        self.report = TrafficReport(self.accounts, Tally())
        self.began = time.monotonic()

    def _accounts(self) -> list[Account]:
        accounts = [Account(f"{self.run_id}-{n}-{TOOLS[n % len(TOOLS)].name}",
                            self.config.tier or TIERS[(n + 1) % len(TIERS)], TOOLS[n % len(TOOLS)])
                    for n in range(self.config.accounts)]
        if self.config.exhaust:
            n = self.config.accounts
            accounts.append(Account(f"{self.run_id}-{n}-exhaust", "lite", TOOLS[n % len(TOOLS)], exhausting=True))
        return accounts

    # ------------------------------------------------------------------ set-up
    async def set_up(self, http: aiohttp.ClientSession) -> None:
        """Buy the plans, issue the keys, wait until worker and gateway know both."""
        await self._buy_plans()
        pairs = await issue_keys(self.settings, [a.account_id for a in self.accounts], label="gateway-traffic")
        for account, (key, key_id) in zip(self.accounts, pairs):
            account.key, account.key_id = key, key_id
        await asyncio.gather(*(self._wait_active(http, a) for a in self.accounts))
        await asyncio.gather(*(self._wait_key_known(a) for a in self.accounts))
        for account in self.accounts:
            self.console.print(f"gateway-traffic: {account.account_id} bought {account.tier}, key {account.key_id}, "
                               f"tool {account.tool.user_agent!r} ({account.tool.protocol} {account.tool.api})")

    async def _buy_plans(self) -> None:
        """plan.purchased per account on `plans`, keyed by account: billing's job, done here by hand."""
        now = format_instant(datetime.now(timezone.utc))
        producer = idempotent_producer(self.settings, "tokenplan-gateway-traffic")
        await producer.start()
        try:
            for account in self.accounts:
                event = PlanPurchased(type="plan.purchased", event_id=f"{account.account_id}-buy", occurred_at=now,
                                      account_id=account.account_id, tier=account.tier, period="monthly",
                                      currency="USD", auto_renew=False)
                await producer.send(self.settings.topic(PLANS), key=account.account_id.encode(),
                                    value=event.model_dump_json().encode())
            await producer.flush()
        finally:
            await producer.stop()

    async def _wait_active(self, http: aiohttp.ClientSession, account: Account) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (await self._lookup(http, account)).get("status") != "active":
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker at {self.config.worker_url} never showed {account.account_id} active")
            await asyncio.sleep(0.3)

    async def _wait_key_known(self, account: Account) -> None:
        """Until the gateway's cache followed the new key: GET /v1/models stops saying 401."""
        client = openai.AsyncOpenAI(base_url=f"{self.config.gateway_url}/v1", api_key=account.key, max_retries=0)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                try:
                    await client.models.list()
                    return
                except (openai.AuthenticationError, openai.APIConnectionError, openai.InternalServerError):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the gateway at {self.config.gateway_url} never accepted the new keys")
                    await asyncio.sleep(0.3)
        finally:
            await client.close()

    async def _lookup(self, http: aiohttp.ClientSession, account: Account) -> dict:
        """The worker's quota lookup for the account ({} when it does not answer)."""
        try:
            async with http.get(f"{self.config.worker_url}/accounts/{account.account_id}/quota") as response:
                body = await response.json() if response.status == 200 else {}
        except (aiohttp.ClientError, asyncio.TimeoutError):
            body = {}
        if body:
            self.report.tally.quota[account.account_id] = body
        return body

    # ------------------------------------------------------------------ requests
    async def _attempt(self, clients: Clients, account: Account, model: str, system: str,
                       messages: list[dict[str, str]], max_tokens: int, stream: bool) -> str | Exception:
        """One request, tallied; the reply text, or the exception the tool got."""
        tally = self.report.tally
        try:
            reply = await send(clients, account.tool, model, system, messages, max_tokens, stream)
        except (openai.APIStatusError, anthropic.APIStatusError) as error:
            if error.status_code in (401, 403, 429):
                tally.refuse(account.account_id, refusal_reason(error))
            else:
                tally.errors[f"http_{error.status_code}"] += 1
            return error
        except (openai.APIConnectionError, anthropic.APIConnectionError) as error:
            tally.errors["connection"] += 1
            return error
        tally.served[account.tool.protocol] += 1
        return reply

    async def tool_loop(self, account: Account) -> None:
        """A developer's tool: one turn every accounts/rate seconds on average."""
        clients, conversation = Clients(self.config.gateway_url, account), Conversation(random.Random(account.key_id))
        system = system_prompt(account.tool)
        interval = len([a for a in self.accounts if not a.exhausting]) / self.config.rate if self.config.rate > 0 else 0
        try:
            while not self.stop.is_set():
                messages = conversation.next_messages()
                model, stream = self.rng.choice(MODELS), self.rng.random() < 0.6
                reply = await self._attempt(clients, account, model, system, messages, 1024, stream)
                if isinstance(reply, str):
                    conversation.answered(messages, reply)
                await self._pause(interval * self.rng.uniform(0.5, 1.5))
        finally:
            await clients.close()

    async def exhaust_loop(self, account: Account) -> None:
        """Huge pastes into the most expensive model until refused for exhaustion; then rare retries."""
        clients, system = Clients(self.config.gateway_url, account), system_prompt(account.tool)
        dump = dump_text(random.Random(self.config.seed), EXHAUST_PROMPT_BYTES)
        try:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                messages = [{"role": "user", "content": f"Review this generated module (paste #{n}) and list its bugs:\n{dump}"}]
                outcome = await self._attempt(clients, account, EXHAUST_MODEL, system, messages,
                                              EXHAUST_MAX_TOKENS, stream=n % 2 == 1)
                if self._exhausted(account, outcome):
                    await self._pause(EXHAUST_PROBE_S)
                else:
                    await self._pause(self.config.exhaust_pause_s)
        finally:
            await clients.close()

    def _exhausted(self, account: Account, outcome: str | Exception) -> bool:
        """Whether this refusal (or an earlier one) says the plan is used up; announce it once."""
        report = self.report
        if report.exhausted_account is not None:
            return True
        if not isinstance(outcome, (openai.RateLimitError, anthropic.RateLimitError)):
            return False
        if refusal_reason(outcome) != "exhausted":
            return False  # in_flight_exceeds_remaining: the last credits are claimed; keep going
        report.exhausted_account, report.exhausted_status = account.account_id, outcome.status_code
        report.exhausted_error = user_message(outcome)
        report.exhausted_after_s = time.monotonic() - self.began
        self.console.print(f"\n[bold red]gateway-traffic: {account.account_id} is EXHAUSTED after "
                           f"{report.exhausted_after_s:.0f}s: HTTP {outcome.status_code}[/bold red]\n"
                           f"  {report.exhausted_error}\n", highlight=False)
        if self.config.stop_when_exhausted:
            self.stop.set()
        return True

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is stopped."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def guarded(self, loop: Awaitable[None]) -> None:
        """Run a loop; a crash is shown and counted at once, not found at the end of the run."""
        try:
            await loop
        except Exception as error:  # a bug here must not silently end one tool's traffic
            self.report.tally.errors["crash"] += 1
            self.console.print(f"gateway-traffic: a loop crashed: {type(error).__name__}: {error}", highlight=False)

    # ------------------------------------------------------------------ the live line
    async def report_loop(self, http: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            await self._pause(self.config.report_every_s)
            await asyncio.gather(*(self._lookup(http, a) for a in self.accounts))
            self.console.print(self.live_line(), highlight=False)

    def live_line(self) -> str:
        """Served/refused by reason, then each account's remaining credits (the worker's view)."""
        tally = self.report.tally
        served = ", ".join(f"{p} {n}" for p, n in sorted(tally.served.items())) or "none"
        refused = ", ".join(f"{r} {n}" for r, n in tally.refused.most_common()) or "none"
        errors = f" · errors {dict(tally.errors)}" if tally.errors else ""
        line = [f"t+{time.monotonic() - self.began:.0f}s served {sum(tally.served.values())} ({served}) · "
                f"refused {sum(tally.refused.values())} ({refused}){errors}"]
        for account in self.accounts:
            line.append(f"    {account.account_id:<28} {account.tier:<8} {quota_text(tally.quota.get(account.account_id))}")
        return "\n".join(line)


def quota_text(body: dict | None) -> str:
    """'3.912e9 credits left (active)' from a lookup body."""
    if not body:
        return "(no lookup yet)"
    remaining = body.get("credits_remaining")
    left = f"{float(remaining) / 1e9:,.3f}e9 credits left" if remaining is not None else "no credits"
    status = body.get("status", "?")
    return f"{left} ([bold red]{status}[/bold red])" if status == "exhausted" else f"{left} ({status})"


async def run_traffic(config: TrafficConfig, settings: GatewaySettings, console: Console | None = None,
                      stop: asyncio.Event | None = None) -> TrafficReport:
    """Set up the accounts, drive the tools until `seconds` pass (0: until `stop`), report."""
    stop = stop or asyncio.Event()
    traffic = Traffic(config, settings, console or Console(stderr=True, soft_wrap=True), stop)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await traffic.set_up(http)
        traffic.began = time.monotonic()
        loops = [traffic.exhaust_loop(a) if a.exhausting else traffic.tool_loop(a) for a in traffic.accounts]
        tasks = [asyncio.create_task(traffic.guarded(loop)) for loop in [*loops, traffic.report_loop(http)]]
        try:
            if config.seconds > 0:
                await traffic._pause(config.seconds)
                stop.set()
            await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(traffic._lookup(http, a) for a in traffic.accounts))
    return traffic.report
