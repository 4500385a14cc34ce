"""Buyer webhooks: signed (Standard Webhooks) notifications from a persistent queue, with retries.

A message is queued in the same transaction as the change it reports, so it is neither lost nor sent for
a change that rolled back. The dispatcher of each orders replica claims due messages before sending them
(one sender per message, however many replicas run), retries failures with growing delays, and keeps
every attempt's outcome as the buyer's delivery log. Buyers verify `webhook-signature` with their secret,
as any Standard Webhooks library does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from shared import clock
from shared.logging import get_logger
from shared.tasks import BackgroundTask

from . import metrics, store

log = get_logger(__name__)

# Seconds to wait before each retry: about a day of attempts before a message is given up as failed.
RETRY_DELAYS_S = (5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
WEBHOOK_EVENT_TYPES = (
    "order.accepted",
    "order.needs_review",
    "order.rejected",
    "line.at_risk",
    "line.back_on_track",
    "shipment.dispatched",
    "shipment.delivered",
    "order.fulfilled",
    "ping",
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


def body_of(message_id: str, event_type: str, at: datetime, data: dict[str, Any]) -> str:
    return json.dumps({"id": message_id, "type": event_type, "timestamp": at.isoformat(), "data": data}, separators=(",", ":"))


async def enqueue(session: AsyncSession, buyer_code: str, event_type: str, data: dict[str, Any]) -> str | None:
    """Queues a message for the buyer if it has an enabled endpoint; returns the message id."""
    if event_type not in WEBHOOK_EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not await store.webhook_endpoint_enabled(session, buyer_code):
        return None
    now = clock.now()
    message_id = f"msg_{uuid.uuid4().hex}"
    await store.queue_webhook(
        session,
        {
            "id": message_id,
            "buyer_code": buyer_code,
            "event_type": event_type,
            "payload": {"data": data, "timestamp": now.isoformat()},
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        },
    )
    return message_id


class Dispatcher:
    """Sends due webhook messages; one per orders process, any number of processes.

    Each round claims the due messages for this dispatcher (`store.claim_due_webhooks`), sends them, and records
    each outcome while giving the claim back. A claim lasts `CLAIM_S`: if the process dies mid-send, another
    replica sends the message again after that, with the same `webhook-id` for the buyer to deduplicate.
    """

    CLAIM_S = 120.0

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, poll_interval_s: float = 0.5, timeout_s: float = 10.0
    ) -> None:
        self.sessions = sessions
        self.poll_interval_s = poll_interval_s
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        # Names this sender in its claims: unique per process and dispatcher.
        self.owner = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task = BackgroundTask("orders-webhook-dispatcher", self._run)

    async def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        with contextlib.suppress(Exception):  # the database may be away: the claims then expire on their own
            async with self.sessions.begin() as session:
                await store.release_webhook_claims(session, self.owner)
        await self.client.aclose()

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                while await self.send_due() > 0:
                    pass
                if failing:
                    log.info("webhook dispatcher sends again")
                    failing = False
            except Exception as exc:  # the database is away: try again on the next tick, say so once
                if not failing:
                    log.warning("webhook dispatcher cannot read its queue, will retry", error=str(exc))
                    failing = True
            await asyncio.sleep(self.poll_interval_s)

    async def send_due(self, limit: int = 20) -> int:
        """Claims and attempts the messages that are due; returns how many were attempted."""
        now = clock.now()
        async with self.sessions.begin() as session:
            due = await store.claim_due_webhooks(
                session, owner=self.owner, now=now, until=now + timedelta(seconds=self.CLAIM_S), limit=limit
            )
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(row) for row in due))
        attempted: list[tuple[str, str]] = []
        async with self.sessions.begin() as session:
            for row, (status_code, error) in zip(due, outcomes, strict=True):
                attempts = row.attempts + 1
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "last_attempt_at": now,
                    "last_status_code": status_code,
                    "last_error": error,
                }
                if error is None:
                    outcome = "delivered"
                    values.update(status="delivered", delivered_at=now, next_attempt_at=None)
                elif attempts > len(RETRY_DELAYS_S):
                    outcome = "failed"
                    values.update(status="failed", next_attempt_at=None)
                else:
                    outcome = "retry"
                    values.update(next_attempt_at=now + timedelta(seconds=RETRY_DELAYS_S[attempts - 1]))
                if await store.record_webhook_attempt(session, row.id, self.owner, values):
                    attempted.append((row.event_type, outcome))
        for event_type, outcome in attempted:  # counted once the outcomes are committed
            metrics.webhook_attempted(event_type, outcome)
        return len(due)

    async def _attempt(self, row: Any) -> tuple[int | None, str | None]:
        if not row.enabled:
            return None, "endpoint disabled"
        at = clock.now()
        body = body_of(row.id, row.event_type, datetime.fromisoformat(row.payload["timestamp"]), row.payload["data"])
        headers = {
            "content-type": "application/json",
            "user-agent": "CeperSupply-Webhooks/1",
            **sign(row.secret, row.id, at, body),
        }
        try:
            response = await self.client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{exc.__class__.__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"
