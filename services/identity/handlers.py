"""Identity's use cases: managing clients and people, issuing tokens, signing in, rotating signing keys.

Each change is one transaction together with its audit row. Secrets are returned once, to the caller that
made them, and are never logged, audited or stored except as argon2 hashes.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from joserfc.jwk import ECKey
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import audit, clock
from shared.audit import Actor
from shared.http import Conflict, FieldError, NotFound, ProblemError, Unprocessable
from shared.logging import get_logger
from shared.settings import Settings

from . import credentials, signing, store
from .domain import (
    Client,
    Person,
    Rejected,
    SigningKey,
    StateConflict,
    TokenError,
    access_claims,
    change_password,
    check_new_person,
    disable_person,
    end_session,
    invalid_client,
    new_client,
    new_person,
    password_problems,
    published_keys,
    retire,
    revoke_client,
    rotate_refresh,
    rotate_secret,
    start_session,
)

log = get_logger(__name__)

Sessions = async_sessionmaker[AsyncSession]


def _invalid(exc: Rejected, prefix: str = "body") -> Unprocessable:
    return Unprocessable(
        str(exc), errors=[FieldError(field=f"{prefix}.{v.field}", message=v.message, type="value_error") for v in exc.violations]
    )


async def _audit(
    session: AsyncSession, actor: Actor, action: str, entity_type: str, entity_id: str, before: Any, after: Any
) -> None:
    await audit.record(
        session,
        store.audit_log,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
        at=clock.now(),
    )


# --- machine clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSecret:
    client: Client
    secret: str  # shown once, to whoever asked for it


async def add_client(sessions: Sessions, actor: Actor, name: str, role: str, tenant: str | None) -> IssuedSecret:
    secret = credentials.new_secret()
    try:
        client = new_client(credentials.new_client_id(name.strip()), name, role, tenant, "", clock.now())
    except Rejected as exc:
        raise _invalid(exc) from exc
    client = replace(client, secret_hash=await credentials.hashed(secret))
    try:
        async with sessions.begin() as session:
            if await store.name_taken(session, client.name):
                raise Conflict(f"the name {client.name} is taken")
            await store.add_client(session, client)
            await _audit(session, actor, "client.added", "client", client.client_id, None, client.public())
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"the name {client.name} is taken") from exc
    log.info("client added", client_id=client.client_id, role=client.role.value, tenant=client.tenant)
    return IssuedSecret(client, secret)


async def rotate_client_secret(sessions: Sessions, actor: Actor, reference: str, grace: timedelta = timedelta(0)) -> IssuedSecret:
    secret = credentials.new_secret()
    secret_hash = await credentials.hashed(secret)
    async with sessions.begin() as session:
        client = await store.find_client(session, reference, for_update=True)
        if client is None:
            raise NotFound(f"no client {reference}")
        try:
            rotated = rotate_secret(client, secret_hash, clock.now(), grace)
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        except Rejected as exc:
            raise _invalid(exc) from exc
        await store.save_client(session, rotated)
        await _audit(session, actor, "client.secret_rotated", "client", client.client_id, client.public(), rotated.public())
    log.info("client secret rotated", client_id=client.client_id, grace_s=grace.total_seconds())
    return IssuedSecret(rotated, secret)


async def revoke(sessions: Sessions, actor: Actor, reference: str) -> Client:
    async with sessions.begin() as session:
        client = await store.find_client(session, reference, for_update=True)
        if client is None:
            raise NotFound(f"no client {reference}")
        try:
            revoked = revoke_client(client, clock.now())
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        await store.save_client(session, revoked)
        await _audit(session, actor, "client.revoked", "client", client.client_id, client.public(), revoked.public())
    log.info("client revoked", client_id=client.client_id)
    return revoked


async def list_clients(sessions: Sessions) -> list[Client]:
    async with sessions() as session:
        return await store.all_clients(session)


# --- people -----------------------------------------------------------------------------------------


async def add_person(sessions: Sessions, actor: Actor, username: str, role: str, tenant: str | None, password: str) -> Person:
    found = check_new_person(username, role, tenant, password)
    if found:
        raise _invalid(Rejected(found))
    try:
        person = new_person(f"p_{uuid.uuid4().hex[:20]}", username, role, tenant, await credentials.hashed(password), clock.now())
    except Rejected as exc:
        raise _invalid(exc) from exc
    try:
        async with sessions.begin() as session:
            if await store.name_taken(session, person.username):
                raise Conflict(f"the name {person.username} is taken")
            await store.add_person(session, person)
            await _audit(session, actor, "person.added", "person", person.username, None, person.public())
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"the name {person.username} is taken") from exc
    log.info("person added", username=person.username, role=person.role.value, tenant=person.tenant)
    return person


async def disable(sessions: Sessions, actor: Actor, username: str) -> Person:
    async with sessions.begin() as session:
        person = await store.find_person(session, username, for_update=True)
        if person is None:
            raise NotFound(f"no person {username}")
        try:
            disabled = disable_person(person, clock.now())
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        await store.save_person(session, disabled)
        await store.end_sign_ins_of(session, person.person_id, clock.now())
        await _audit(session, actor, "person.disabled", "person", person.username, person.public(), disabled.public())
    log.info("person disabled", username=username)
    return disabled


async def reset_password(sessions: Sessions, actor: Actor, username: str, password: str) -> Person:
    found = password_problems(password, username)
    if found:
        raise _invalid(Rejected(found))
    password_hash = await credentials.hashed(password)
    async with sessions.begin() as session:
        person = await store.find_person(session, username, for_update=True)
        if person is None:
            raise NotFound(f"no person {username}")
        try:
            changed = change_password(person, password_hash, clock.now())
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        await store.save_person(session, changed)
        await _audit(session, actor, "person.password_reset", "person", person.username, person.public(), changed.public())
    log.info("password reset", username=username)
    return changed


async def list_people(sessions: Sessions) -> list[Person]:
    async with sessions() as session:
        return await store.all_people(session)


async def audit_entries(sessions: Sessions, entity_type: str | None, entity_id: str | None, limit: int) -> list[dict[str, Any]]:
    async with sessions() as session:
        return await audit.entries(session, store.audit_log, entity_type=entity_type, entity_id=entity_id, limit=limit)


# --- signing keys -----------------------------------------------------------------------------------


class Keyring:
    """The private keys this process can sign with, unsealed once per key id.

    The active key is looked up in the database for every token, so all replicas switch keys together
    when one of them rotates; only the unsealing is cached.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.passphrase = settings.identity_key_passphrase.get_secret_value() if settings.identity_key_passphrase else None
        self.file_key: ECKey | None = None
        if settings.identity_signing_key_file is not None:
            self.file_key = signing.load_key_file(settings.identity_signing_key_file, self.passphrase)
        elif settings.env == "production" and self.passphrase is None:
            raise signing.KeyMaterialError(
                "in production the signing key comes from CEPER_IDENTITY_SIGNING_KEY_FILE, or is kept in the database "
                "encrypted with CEPER_IDENTITY_KEY_PASSPHRASE (or CEPER_IDENTITY_KEY_PASSPHRASE_FILE): set one"
            )
        self._unsealed: dict[str, ECKey] = {}

    def unsealed(self, kid: str, pem: str | None, encrypted: bool) -> ECKey:
        if self.file_key is not None and signing.kid_of(self.file_key) == kid:
            return self.file_key
        if kid not in self._unsealed:
            if pem is None:
                raise signing.KeyMaterialError(f"the private half of signing key {kid} is not here")
            self._unsealed[kid] = signing.unseal(pem, self.passphrase if encrypted else None)
        return self._unsealed[kid]


def _leeway(settings: Settings) -> timedelta:
    return timedelta(seconds=max(settings.auth_leeway_s, 60))


async def ensure_signing_key(sessions: Sessions, keyring: Keyring) -> str:
    """Makes sure one key signs: the file's key when configured, else the database's (made on first start)."""
    now = clock.now()
    async with sessions.begin() as session:
        keys = await store.lock_signing_keys(session)
        if keyring.file_key is not None:
            kid = signing.kid_of(keyring.file_key)
            if not any(k.kid == kid for k in keys):
                key = SigningKey(kid, signing.public_jwk(keyring.file_key), now, from_file=True)
                await store.add_signing_key(session, key, None, False)
            elif any(k.kid == kid and not k.active for k in keys):
                await store.set_retired(session, kid, None)
            for old in retire(keys, kid, now):
                await store.set_retired(session, old.kid, old.retired_at)
            return kid
        active = [k for k in keys if k.active and not k.from_file]
        if active:
            return active[0].kid
        return await _new_database_key(session, keyring, keys, now)


async def _new_database_key(session: AsyncSession, keyring: Keyring, keys: list[SigningKey], now: datetime) -> str:
    key = signing.generate_key()
    kid = signing.kid_of(key)
    await store.add_signing_key(
        session,
        SigningKey(kid, signing.public_jwk(key), now),
        signing.seal(key, keyring.passphrase),
        keyring.passphrase is not None,
    )
    for old in retire(keys, kid, now):
        await store.set_retired(session, old.kid, old.retired_at)
    if keyring.passphrase is None:
        log.warning("signing key stored unencrypted: set CEPER_IDENTITY_KEY_PASSPHRASE outside development", kid=kid)
    return kid


async def rotate_signing_key(sessions: Sessions, keyring: Keyring, actor: Actor) -> tuple[str, list[str]]:
    """A new key signs from now on; the old one stays published until the tokens it signed have expired.
    Returns the new key id and the ids retired."""
    if keyring.file_key is not None:
        raise Conflict("the signing key comes from CEPER_IDENTITY_SIGNING_KEY_FILE: replace the file and restart to rotate")
    now = clock.now()
    settings = keyring.settings
    async with sessions.begin() as session:
        keys = await store.lock_signing_keys(session)
        retired = [k.kid for k in keys if k.active]
        kid = await _new_database_key(session, keyring, keys, now)
        gone = await store.delete_signing_keys_retired_before(
            session, now - timedelta(seconds=settings.identity_token_ttl_s) - _leeway(settings)
        )
        await _audit(
            session, actor, "signing_key.rotated", "signing_key", kid, {"active": retired}, {"active": [kid], "deleted": gone}
        )
    log.info("signing key rotated", kid=kid, retired=retired)
    return kid, retired


async def jwks(sessions: Sessions, settings: Settings) -> dict[str, Any]:
    async with sessions() as session:
        keys = await store.signing_keys_in_use(session)
    ttl = timedelta(seconds=settings.identity_token_ttl_s)
    return {"keys": [dict(k.public_jwk) for k in published_keys(keys, clock.now(), ttl, _leeway(settings))]}


async def published_signing_keys(sessions: Sessions, settings: Settings) -> list[SigningKey]:
    async with sessions() as session:
        keys = await store.signing_keys_in_use(session)
    return published_keys(keys, clock.now(), timedelta(seconds=settings.identity_token_ttl_s), _leeway(settings))


async def _sign(session: AsyncSession, keyring: Keyring, claims: dict[str, Any]) -> str:
    found = await store.active_signing_key(session)
    if found is None:
        raise ProblemError("no signing key yet: the service is starting", status=503, title="Service unavailable")
    key, pem, encrypted = found
    return signing.sign(claims, keyring.unsealed(key.kid, pem, encrypted))


# --- tokens -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    claims: dict[str, Any]


async def issue_client_token(sessions: Sessions, keyring: Keyring, client_id: str, secret: str) -> AccessToken:
    """The client credentials grant: a token for an active client whose secret matches (RFC 6749 §4.4)."""
    settings = keyring.settings
    async with sessions() as session:
        client = await store.client_by_id(session, client_id)
    now = clock.now()
    hashes = client.secret_hashes(now) if client is not None and client.active else []
    if not await credentials.matches(secret, hashes) or client is None:
        log.info("client authentication failed", client_id=client_id[:80])
        raise invalid_client()
    ttl = timedelta(seconds=settings.identity_token_ttl_s)
    claims = access_claims(
        issuer=settings.identity_issuer_url(),
        audience=settings.identity_audience,
        subject=client.client_id,
        role=client.role,
        tenant=client.tenant,
        now=now,
        ttl=ttl,
        token_id=uuid.uuid4().hex,
        client_id=client.client_id,
    )
    async with sessions() as session:
        token = await _sign(session, keyring, claims)
    return AccessToken(token, int(ttl.total_seconds()), claims)


class SignInRefused(ProblemError):
    status = 401
    title = "Sign-in failed"
    type_slug = "sign-in-failed"


class SignInLocked(ProblemError):
    status = 429
    title = "Too many failed sign-ins"
    type_slug = "sign-in-locked"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class SignInThrottle:
    """Failed sign-ins counted per account name and per client address (moving windows, `limits`).

    Unknown names are counted exactly like known ones, so the lock-out notice tells nothing about which
    accounts exist. With several replicas, point `CEPER_IDENTITY_LOGIN_LIMIT_STORAGE` at a shared store.
    """

    def __init__(self, settings: Settings) -> None:
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.identity_login_limit_storage))
        self.per_name: RateLimitItem = parse(settings.identity_login_limit)
        self.per_address: RateLimitItem = parse(settings.identity_login_ip_limit)

    @staticmethod
    def _name_key(username: str) -> str:
        return hashlib.sha256(username.strip().lower().encode()).hexdigest()

    async def check(self, username: str, address: str) -> None:
        for item, key in ((self.per_name, self._name_key(username)), (self.per_address, address)):
            if not await self.limiter.test(item, "sign-in", key):
                stats = await self.limiter.get_window_stats(item, "sign-in", key)
                wait = max(1, int(stats.reset_time - time.time()) + 1)  # `limits` keeps wall-clock time
                raise SignInLocked(
                    "Too many failed sign-ins for this name or from this address. "
                    f"Wait {max(1, round(wait / 60))} minute(s) and try again, or ask an administrator.",
                    wait,
                )

    async def failed(self, username: str, address: str) -> None:
        await self.limiter.hit(self.per_name, "sign-in", self._name_key(username))
        await self.limiter.hit(self.per_address, "sign-in", address)

    async def succeeded(self, username: str) -> None:
        await self.limiter.clear(self.per_name, "sign-in", self._name_key(username))


@dataclass(frozen=True)
class SignedIn:
    """A person's tokens: the access token, and the refresh token that renews it until the sign-in ends."""

    access: AccessToken
    refresh_token: str = field(repr=False)
    ends_at: datetime

    def refresh_expires_in(self, now: datetime) -> int:
        return max(0, int((self.ends_at - now).total_seconds()))


class RenewalRefused(ProblemError):
    status = 401
    title = "Renewal refused"
    type_slug = "renewal-refused"


async def _person_token(session: AsyncSession, keyring: Keyring, person: Person, now: datetime) -> AccessToken:
    settings = keyring.settings
    ttl = timedelta(seconds=settings.identity_token_ttl_s)
    claims = access_claims(
        issuer=settings.identity_issuer_url(),
        audience=settings.identity_audience,
        subject=person.person_id,
        role=person.role,
        tenant=person.tenant,
        now=now,
        ttl=ttl,
        token_id=uuid.uuid4().hex,
        username=person.username,
    )
    return AccessToken(await _sign(session, keyring, claims), int(ttl.total_seconds()), claims)


async def sign_in(
    sessions: Sessions, keyring: Keyring, throttle: SignInThrottle, username: str, password: str, address: str
) -> SignedIn:
    """A person's password sign-in: an access token and a refresh token when the name and password match an
    enabled person. The sign-in may be renewed for `CEPER_IDENTITY_SESSION_HOURS` at most."""
    settings = keyring.settings
    await throttle.check(username, address)
    async with sessions() as session:
        person = await store.find_person(session, username.strip().lower())
    usable = person is not None and person.active
    if not await credentials.matches(password, [person.password_hash] if usable and person else []) or person is None:
        await throttle.failed(username, address)
        log.info("sign-in failed", address=address)
        raise SignInRefused("The name or the password is not right, or the account is disabled.")
    await throttle.succeeded(username)
    now = clock.now()
    refresh = credentials.new_secret()
    started = start_session(
        uuid.uuid4().hex,
        person.person_id,
        credentials.refresh_hash(refresh),
        now,
        timedelta(hours=settings.identity_session_hours),
    )
    async with sessions.begin() as session:
        await store.delete_sign_ins_ended_before(session, now - timedelta(days=1))
        await store.add_sign_in(session, started)
        token = await _person_token(session, keyring, person, now)
    log.info("signed in", username=person.username, sign_in=started.session_id)
    return SignedIn(token, refresh, started.ends_at)


async def renew(sessions: Sessions, keyring: Keyring, refresh_token: str) -> SignedIn:
    """A new access token and a new refresh token for the current refresh token of an open sign-in; the one
    presented is spent. A spent token presented again after the grace ends the sign-in: a copy is loose."""
    now = clock.now()
    presented = credentials.refresh_hash(refresh_token)
    refresh = credentials.new_secret()
    replayed = False
    async with sessions.begin() as session:
        found = await store.sign_in_holding(session, presented)
        if found is None:
            raise RenewalRefused("The sign-in has ended or the refresh token is not known.")
        current, is_current = found
        if not is_current:
            grace = timedelta(seconds=keyring.settings.identity_refresh_grace_s)
            replayed = current.ended_at is None and current.replayed(now, grace)
            if replayed:  # ended in this transaction, which commits: the refusal is raised after it
                await store.save_sign_in(session, end_session(current, now), holding=current.refresh_hash)
        else:
            person = await store.person_by_id(session, current.person_id)
            if not current.open_at(now) or person is None or not person.active:
                raise RenewalRefused("The sign-in has ended.")
            rotated = rotate_refresh(current, credentials.refresh_hash(refresh), now)
            if not await store.save_sign_in(session, rotated, holding=presented):
                raise RenewalRefused("The refresh token has been used already.")
            token = await _person_token(session, keyring, person, now)
    if not is_current:
        if replayed:
            log.warning("a spent refresh token came back: the sign-in is ended", sign_in=current.session_id)
        raise RenewalRefused("The refresh token has been used already.")
    log.info("sign-in renewed", username=token.claims["preferred_username"], sign_in=current.session_id)
    return SignedIn(token, refresh, rotated.ends_at)


async def sign_out(sessions: Sessions, refresh_token: str) -> None:
    """End the sign-in this refresh token belongs to (current or just spent); an unknown token ends nothing."""
    now = clock.now()
    async with sessions.begin() as session:
        found = await store.sign_in_holding(session, credentials.refresh_hash(refresh_token))
        if found is not None and found[0].ended_at is None:
            current = found[0]
            await store.save_sign_in(session, end_session(current, now), holding=current.refresh_hash)
            log.info("signed out", sign_in=current.session_id)


def token_problem(error: TokenError) -> dict[str, str]:
    return {"error": error.error, "error_description": error.description}
