"""Identity's tables and queries: clients, people, sign-in sessions, signing keys and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import UtcDateTime
from shared.roles import Role

from .domain import Client, Person, SigningKey, SignInSession

metadata = sa.MetaData()
audit_log = audit.audit_table(metadata)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("tenant", sa.String(20), nullable=True),
    sa.Column("secret_hash", sa.String(200), nullable=False),
    sa.Column("previous_secret_hash", sa.String(200), nullable=True),
    sa.Column("previous_secret_until", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("rotated_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

people = sa.Table(
    "people",
    metadata,
    sa.Column("person_id", sa.String(40), primary_key=True),
    sa.Column("username", sa.String(63), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("tenant", sa.String(20), nullable=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("password_changed_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime, nullable=True),
)

# A person's sign-ins: the current refresh token and the one before it, as SHA-256 hashes, never the tokens.
sign_in_sessions = sa.Table(
    "sign_in_sessions",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("person_id", sa.String(40), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False, index=True),
    sa.Column("refresh_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("previous_hash", sa.String(64), nullable=True, index=True),
    sa.Column("rotated_at", UtcDateTime, nullable=True),
    sa.Column("ended_at", UtcDateTime, nullable=True),
)

# Private keys are PEM, encrypted with CEPER_IDENTITY_KEY_PASSPHRASE; a key read from a file keeps none here.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("private_pem", sa.Text, nullable=True),
    sa.Column("encrypted", sa.Boolean, nullable=False),
    sa.Column("from_file", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("retired_at", UtcDateTime, nullable=True),
)


# --- clients ----------------------------------------------------------------------------------------


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        role=Role(row.role),
        tenant=row.tenant,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
        previous_secret_hash=row.previous_secret_hash,
        previous_secret_until=row.previous_secret_until,
    )


def _client_values(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "role": client.role.value,
        "tenant": client.tenant,
        "secret_hash": client.secret_hash,
        "previous_secret_hash": client.previous_secret_hash,
        "previous_secret_until": client.previous_secret_until,
        "created_at": client.created_at,
        "rotated_at": client.rotated_at,
        "revoked_at": client.revoked_at,
    }


async def add_client(session: AsyncSession, client: Client) -> None:
    await session.execute(sa.insert(clients).values(**_client_values(client)))


async def save_client(session: AsyncSession, client: Client) -> None:
    values = _client_values(client)
    await session.execute(sa.update(clients).where(clients.c.client_id == client.client_id).values(**values))


async def find_client(session: AsyncSession, reference: str, *, for_update: bool = False) -> Client | None:
    """A client by its id or its name."""
    query = sa.select(clients).where(sa.or_(clients.c.client_id == reference, clients.c.name == reference))
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _client(row) if row else None


async def client_by_id(session: AsyncSession, client_id: str) -> Client | None:
    row = (await session.execute(sa.select(clients).where(clients.c.client_id == client_id))).first()
    return _client(row) if row else None


async def name_taken(session: AsyncSession, name: str) -> bool:
    found = await session.execute(
        sa.select(clients.c.name)
        .where(clients.c.name == name)
        .union_all(sa.select(people.c.username).where(people.c.username == name))
    )
    return found.first() is not None


async def all_clients(session: AsyncSession) -> list[Client]:
    return [_client(row) for row in await session.execute(sa.select(clients).order_by(clients.c.name))]


# --- people -----------------------------------------------------------------------------------------


def _person(row: Any) -> Person:
    return Person(
        person_id=row.person_id,
        username=row.username,
        role=Role(row.role),
        tenant=row.tenant,
        password_hash=row.password_hash,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
        disabled_at=row.disabled_at,
    )


def _person_values(person: Person) -> dict[str, Any]:
    return {
        "person_id": person.person_id,
        "username": person.username,
        "role": person.role.value,
        "tenant": person.tenant,
        "password_hash": person.password_hash,
        "created_at": person.created_at,
        "password_changed_at": person.password_changed_at,
        "disabled_at": person.disabled_at,
    }


async def add_person(session: AsyncSession, person: Person) -> None:
    await session.execute(sa.insert(people).values(**_person_values(person)))


async def save_person(session: AsyncSession, person: Person) -> None:
    await session.execute(sa.update(people).where(people.c.person_id == person.person_id).values(**_person_values(person)))


async def find_person(session: AsyncSession, username: str, *, for_update: bool = False) -> Person | None:
    query = sa.select(people).where(people.c.username == username)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _person(row) if row else None


async def all_people(session: AsyncSession) -> list[Person]:
    return [_person(row) for row in await session.execute(sa.select(people).order_by(people.c.username))]


async def person_by_id(session: AsyncSession, person_id: str) -> Person | None:
    row = (await session.execute(sa.select(people).where(people.c.person_id == person_id))).first()
    return _person(row) if row else None


# --- sign-in sessions -------------------------------------------------------------------------------


def _sign_in(row: Any) -> SignInSession:
    return SignInSession(**{c.name: getattr(row, c.name) for c in sign_in_sessions.c})


async def add_sign_in(session: AsyncSession, sign_in: SignInSession) -> None:
    await session.execute(sa.insert(sign_in_sessions).values(**vars(sign_in)))


async def sign_in_holding(session: AsyncSession, token_hash: str) -> tuple[SignInSession, bool] | None:
    """The sign-in whose current (True) or previous (False) refresh token has this hash, locked for the change."""
    column = sa.case((sign_in_sessions.c.refresh_hash == token_hash, True), else_=False).label("current")
    query = (
        sa.select(sign_in_sessions, column)
        .where(sa.or_(sign_in_sessions.c.refresh_hash == token_hash, sign_in_sessions.c.previous_hash == token_hash))
        .with_for_update()
    )
    row = (await session.execute(query)).first()
    return (_sign_in(row), bool(row.current)) if row else None


async def save_sign_in(session: AsyncSession, sign_in: SignInSession, *, holding: str) -> bool:
    """Write the sign-in if its current refresh token is still `holding`: False when another request rotated it
    first (replicas of the console renewing at once)."""
    done = await session.execute(
        sa.update(sign_in_sessions)
        .where(sign_in_sessions.c.session_id == sign_in.session_id, sign_in_sessions.c.refresh_hash == holding)
        .values(**vars(sign_in))
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE


async def end_sign_ins_of(session: AsyncSession, person_id: str, now: datetime) -> None:
    await session.execute(
        sa.update(sign_in_sessions)
        .where(sign_in_sessions.c.person_id == person_id, sign_in_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


async def delete_sign_ins_ended_before(session: AsyncSession, before: datetime) -> int:
    done = await session.execute(
        sa.delete(sign_in_sessions).where(sa.or_(sign_in_sessions.c.ends_at < before, sign_in_sessions.c.ended_at < before))
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


# --- signing keys -----------------------------------------------------------------------------------


def _signing_key(row: Any) -> SigningKey:
    return SigningKey(row.kid, dict(row.public_jwk), row.created_at, row.retired_at, row.from_file)


async def signing_keys_in_use(session: AsyncSession) -> list[SigningKey]:
    rows = await session.execute(sa.select(signing_keys).order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid))
    return [_signing_key(row) for row in rows]


async def active_signing_key(session: AsyncSession) -> tuple[SigningKey, str | None, bool] | None:
    """The key that signs now, with its private PEM and whether that PEM is encrypted."""
    query = sa.select(signing_keys).where(signing_keys.c.retired_at.is_(None)).order_by(signing_keys.c.created_at.desc()).limit(1)
    row = (await session.execute(query)).first()
    return (_signing_key(row), row.private_pem, row.encrypted) if row else None


async def lock_signing_keys(session: AsyncSession) -> list[SigningKey]:
    """All keys, locked: two replicas starting (or rotating) at once must not both make a new active key."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("LOCK TABLE signing_keys IN EXCLUSIVE MODE"))
    # SQLite's writers already hold the database lock (BEGIN IMMEDIATE).
    return await signing_keys_in_use(session)


async def add_signing_key(session: AsyncSession, key: SigningKey, private_pem: str | None, encrypted: bool) -> None:
    await session.execute(
        sa.insert(signing_keys).values(
            kid=key.kid,
            public_jwk=dict(key.public_jwk),
            private_pem=private_pem,
            encrypted=encrypted,
            from_file=key.from_file,
            created_at=key.created_at,
            retired_at=key.retired_at,
        )
    )


async def set_retired(session: AsyncSession, kid: str, retired_at: datetime | None) -> None:
    values: dict[str, Any] = {"retired_at": retired_at}
    if retired_at is not None:
        values["private_pem"] = None  # a retired key never signs again: its private half is not kept
    await session.execute(sa.update(signing_keys).where(signing_keys.c.kid == kid).values(**values))


async def delete_signing_keys_retired_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(sa.delete(signing_keys).where(signing_keys.c.retired_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
