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
import ipaddress
import json
import os
import secrets
import socket
import time
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
from .destinations import Address, DestinationRules, RefusedDestination, Target
from .domain import WebhookEndpoint

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


def sign(secret: str, message_id: str, at: datetime, body: str, *older: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt. Secrets still in their grace after a rotation sign
    too: `webhook-signature` then lists one `v1,<signature>` per secret, and a verifier holding any accepts."""
    signatures = " ".join(Webhook(s).sign(message_id, at, body) for s in (secret, *older))
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signatures}


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to now, each once, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_destination(rules: DestinationRules, url: str) -> tuple[Target, Address]:
    """The URL's target and the address to connect to, once every address its host resolves to passes the rules."""
    target = rules.check_url(url)
    if target.address is not None:
        return target, target.address
    try:
        addresses = await resolve(target.host, target.port)
    except OSError:
        raise RefusedDestination(f"{target.host} does not resolve") from None
    rules.check_addresses(target.host, addresses)
    return target, addresses[0]


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
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        rules: DestinationRules | None = None,
        poll_interval_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.rules = rules or DestinationRules()
        self.poll_interval_s = poll_interval_s
        # No proxies from the environment and no redirects: requests go to the address checked, and only there.
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)
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
            for row, (status_code, error, duration_ms) in zip(due, outcomes, strict=True):
                attempts = row.attempts + 1
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "last_attempt_at": now,
                    "last_status_code": status_code,
                    "last_error": error,
                    "last_duration_ms": duration_ms,
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

    async def _attempt(self, row: Any) -> tuple[int | None, str | None, int | None]:
        """Sends one message: (status code, error, milliseconds). The receiver's answer is not kept, only its status."""
        if not row.enabled:
            return None, "endpoint disabled", None
        started = time.monotonic()
        try:
            target, address = await checked_destination(self.rules, row.url)
        except RefusedDestination as refused:
            log.warning("webhook refused before sending", buyer_code=row.buyer_code, message_id=row.id, reason=str(refused))
            return None, f"refused: {refused}"[:500], None
        at = clock.now()
        endpoint = WebhookEndpoint(
            row.buyer_code, row.url, row.secret, row.enabled, at, row.previous_secret, row.previous_secret_expires_at
        )
        body = body_of(row.id, row.event_type, datetime.fromisoformat(row.payload["timestamp"]), row.payload["data"])
        request = self.client.build_request(
            "POST",
            # To the address just checked, not to a second lookup that could answer otherwise; the host name still
            # goes in Host and in TLS (SNI and the certificate check).
            httpx.URL(row.url).copy_with(host=str(address)),
            content=body,
            headers={
                "host": httpx.URL(row.url).netloc.decode("ascii"),
                "content-type": "application/json",
                "user-agent": "CeperSupply-Webhooks/1",
                **_signed(endpoint, row.id, at, body),
            },
            extensions={"sni_hostname": target.host},
        )
        try:
            response = await self.client.send(request, stream=True)  # the body is never read: only the status counts
            await response.aclose()
        except httpx.HTTPError as exc:
            return None, f"{exc.__class__.__name__}: {exc}"[:500], _ms_since(started)
        if 200 <= response.status_code < 300:
            return response.status_code, None, _ms_since(started)
        return response.status_code, f"HTTP {response.status_code}", _ms_since(started)


def _signed(endpoint: WebhookEndpoint, message_id: str, at: datetime, body: str) -> dict[str, str]:
    current, *older = endpoint.signing_secrets(at)
    return sign(current, message_id, at, body, *older)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
