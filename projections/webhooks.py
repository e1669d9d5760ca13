"""Webhook delivery of alerts: signed POSTs, retried with exponential backoff.

At least once: a delivery row (`webhook_deliveries`) is written with the alert, in the
fold's transaction, and stays `pending` until a 2xx answer; the body carries `alert_id`
(also a header) so receivers dedupe. Every failed attempt is recorded (attempts, last
error, next try) for the operator page; after TOKENPLAN_WEBHOOK_ATTEMPTS_MAX attempts
the row becomes `failed` and is not tried again.

Signature: `X-Tokenplan-Signature: sha256=<hex HMAC-SHA-256(secret, "<timestamp>." + body)>`
with `X-Tokenplan-Timestamp: <unix seconds>`; signing the timestamp too lets a receiver
refuse replays of an old body (`verify` does, within VERIFY_TOLERANCE_S).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aiohttp
from sqlalchemy import Engine, select, update

from projections.tables import alerts, webhook_deliveries

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "ALERT_ID_HEADER", "sign", "verify", "backoff_s", "WebhookSender"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Tokenplan-Signature"
TIMESTAMP_HEADER = "X-Tokenplan-Timestamp"
ALERT_ID_HEADER = "X-Tokenplan-Alert-Id"
#: How old a signed timestamp a receiver accepts (replay protection).
VERIFY_TOLERANCE_S = 300
#: How often the sender looks for due deliveries when nothing woke it.
POLL_S = 1.0
#: Characters of an error (or a response body) kept in `last_error`.
ERROR_TEXT_MAX = 500


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, signature: str, body: bytes, now: float | None = None,
           tolerance_s: float = VERIFY_TOLERANCE_S) -> bool:
    """What a receiver does: recompute the HMAC (constant-time compare) and check the timestamp is fresh."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def backoff_s(attempts: int, base_s: float, maximum_s: float) -> float:
    """Delay before the next try after `attempts` failed ones: base, 2 base, 4 base, ... capped."""
    return min(base_s * (2 ** max(attempts - 1, 0)), maximum_s)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None


class WebhookSender:
    """Tries due deliveries; call `deliver_due` (one round) or `run` (until stopped)."""

    def __init__(self, engine: Engine, url: str, secret: str, attempts_max: int = 10, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, timeout_s: float = 10.0, batch_max: int = 50) -> None:
        self.engine = engine
        self.url = url
        self.secret = secret
        self.attempts_max = attempts_max
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.batch_max = batch_max
        self.wake = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0

    def _due(self) -> list[tuple[str, str, str, int]]:
        now = datetime.now(timezone.utc)
        query = (select(webhook_deliveries.c.alert_id, webhook_deliveries.c.url, alerts.c.body,
                        webhook_deliveries.c.attempts)
                 .join(alerts, alerts.c.alert_id == webhook_deliveries.c.alert_id)
                 .where(webhook_deliveries.c.status == "pending", webhook_deliveries.c.next_attempt_at <= now)
                 .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.alert_id)
                 .limit(self.batch_max))
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    async def _post(self, session: aiohttp.ClientSession, url: str, alert_id: str, body: bytes) -> Outcome:
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign(self.secret, timestamp, body), ALERT_ID_HEADER: alert_id}
        try:
            async with session.post(url, data=body, headers=headers, timeout=self.timeout) as response:
                if 200 <= response.status < 300:
                    return Outcome(True, response.status, None)
                text = (await response.text(errors="replace"))[:ERROR_TEXT_MAX]
                return Outcome(False, response.status, f"HTTP {response.status}: {text}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            return Outcome(False, None, f"{type(error).__name__}: {error}"[:ERROR_TEXT_MAX] or type(error).__name__)

    def _record(self, alert_id: str, attempts: int, outcome: Outcome) -> None:
        now = datetime.now(timezone.utc)
        if outcome.delivered:
            values = {"status": "delivered", "delivered_at": now, "next_attempt_at": None}  # keeps the last error
        elif attempts >= self.attempts_max:
            values = {"status": "failed", "next_attempt_at": None, "last_error": outcome.error}
        else:
            delay = backoff_s(attempts, self.backoff_base_s, self.backoff_max_s)
            values = {"next_attempt_at": now + timedelta(seconds=delay), "last_error": outcome.error}
        with self.engine.begin() as connection:
            connection.execute(update(webhook_deliveries).where(webhook_deliveries.c.alert_id == alert_id).values(
                attempts=attempts, last_status_code=outcome.status_code, last_attempt_at=now, **values))

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """Try every due delivery once; returns how many were tried."""
        due = await asyncio.to_thread(self._due)
        for alert_id, url, body, attempts in due:
            outcome = await self._post(session, url, alert_id, body.encode())
            await asyncio.to_thread(self._record, alert_id, attempts + 1, outcome)
            if outcome.delivered:
                self.delivered += 1
            else:
                self.failed_attempts += 1
                log.warning("webhook: %s attempt %d failed: %s", alert_id, attempts + 1, outcome.error)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; woken early by `wake` (new alerts)."""
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await self.deliver_due(session)
                except Exception:  # a database hiccup must not end deliveries for good
                    log.exception("webhook: delivery round failed")
                self.wake.clear()
                waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
