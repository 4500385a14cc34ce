"""Idempotency keys: a client's retry of a command gets the first answer and changes nothing, in every service.

A service that takes the `Idempotency-Key` header keeps one `idempotency_keys` table of the same shape:
the key within its scope (what it applies to, e.g. `purchase-orders:KAI` or `reservations`), the
fingerprint of the first request's body, and the id of what that request made. A retry with the same body
is answered from that resource, marked `Idempotent-Replayed: true`; the same key with another body is
refused (409). The key is remembered in the transaction that makes the resource, so both exist or neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Header, Response
from sqlalchemy.ext.asyncio import AsyncSession

from .db import UtcDateTime
from .http import Conflict

REPLAYED_HEADER = "Idempotent-Replayed"
_HEADER = Header(
    min_length=1,
    max_length=200,
    description="Unique per client and request: a retry with the same key and body gets the same answer",
)

# The header of a command that must carry a key, and of one where the key is the client's choice.
IdempotencyKey = Annotated[str, _HEADER]
OptionalIdempotencyKey = Annotated[str | None, _HEADER]


class KeyReused(Conflict):
    """The key was first used with another request body: answering either would be wrong."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used with a different request body")


def fingerprint(body: Mapping[str, Any]) -> str:
    """A hash of the request's body that ignores key order and spacing."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def mark_replayed(response: Response) -> None:
    response.headers[REPLAYED_HEADER] = "true"


class IdempotencyKeys:
    """The `idempotency_keys` table of one service's database, and the one way to read and write it."""

    def __init__(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "idempotency_keys",
            metadata,
            sa.Column("scope", sa.String(100), primary_key=True),
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("request_hash", sa.String(64), nullable=False),
            sa.Column("resource_id", sa.String(64), nullable=False),
            sa.Column("created_at", UtcDateTime, nullable=False),
        )

    async def recall(self, session: AsyncSession, scope: str, key: str, request_hash: str) -> str | None:
        """The id of what the first request with this key made, or None for a new key; `KeyReused` if the body differs."""
        table = self.table
        earlier = (
            await session.execute(
                sa.select(table.c.request_hash, table.c.resource_id).where(table.c.scope == scope, table.c.key == key)
            )
        ).first()
        if earlier is None:
            return None
        if earlier.request_hash != request_hash:
            raise KeyReused()
        return str(earlier.resource_id)

    async def remember(
        self, session: AsyncSession, scope: str, key: str, request_hash: str, resource_id: str, at: datetime
    ) -> None:
        """Records the key in the caller's transaction; a concurrent first use of the same key fails its commit."""
        await session.execute(
            sa.insert(self.table).values(scope=scope, key=key, request_hash=request_hash, resource_id=resource_id, created_at=at)
        )


@dataclass
class Command:
    """A command on something that exists already (replan order X, dispatch shipment Y) sent with a key: the
    scope names the target, so the same key for another target is a new command. `replayed` is set when an
    earlier request with this key already acted; the handler then answers from `resource_id` and does nothing."""

    scope: str
    key: str
    request_hash: str
    replayed: bool = False

    @classmethod
    def of(cls, scope: str, key: str | None, body: Mapping[str, Any]) -> Command | None:
        return None if key is None else cls(scope, key, fingerprint(body))

    async def recall(self, keys: IdempotencyKeys, session: AsyncSession) -> str | None:
        earlier = await keys.recall(session, self.scope, self.key, self.request_hash)
        self.replayed = earlier is not None
        return earlier

    async def remember(self, keys: IdempotencyKeys, session: AsyncSession, resource_id: str, at: datetime) -> None:
        await keys.remember(session, self.scope, self.key, self.request_hash, resource_id, at)
