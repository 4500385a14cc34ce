"""Identity's model and rules: machine clients, people, sign-in sessions, signing keys, and what an access token says.

Pure Python: no I/O, no clock, no cryptography. Hashing, signing and storage are the handlers' business;
this module decides what is valid, what a change does, and which claims a token carries.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from shared.roles import TENANT_OF, Role, tenant_problem

# Client names and usernames: lower case, so `KAI-Procurement` and `kai-procurement` cannot both exist.
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # argon2 takes any length; this only bounds the work a request can ask for
SIGNING_ALGORITHM = "ES256"


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class Rejected(ValueError):
    """A command broke one or more rules; each violation names the offending field."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = list(violations)


class StateConflict(ValueError):
    """The command does not fit the entity's state (revoking a revoked client)."""


def _check_account(name: str, role: str, tenant: str | None) -> list[Violation]:
    found = []
    if not ACCOUNT_NAME.fullmatch(name):
        found.append(
            Violation("name", "2–63 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        )
    problem = tenant_problem(role, tenant)
    if problem is not None:
        found.append(Violation("role" if role not in set(Role) else "tenant", problem))
    return found


# --- machine clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """A buyer's or laboratory's system that gets tokens with its id and secret (client credentials)."""

    client_id: str
    name: str
    role: Role
    tenant: str | None
    secret_hash: str
    created_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    # After a rotation the previous secret keeps working until this time, so the client can roll over.
    previous_secret_hash: str | None = None
    previous_secret_until: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def secret_hashes(self, now: datetime) -> list[str]:
        """The hashes a presented secret may match now: the current one, and the previous one in its grace."""
        hashes = [self.secret_hash]
        if self.previous_secret_hash and self.previous_secret_until and now < self.previous_secret_until:
            hashes.append(self.previous_secret_hash)
        return hashes

    def public(self) -> dict[str, Any]:
        """What may be shown, logged or audited: never a secret or its hash."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "role": self.role.value,
            "tenant": self.tenant,
            "created_at": _iso(self.created_at),
            "rotated_at": _iso(self.rotated_at),
            "revoked_at": _iso(self.revoked_at),
            "previous_secret_until": _iso(self.previous_secret_until),
        }


def new_client(client_id: str, name: str, role: str, tenant: str | None, secret_hash: str, now: datetime) -> Client:
    name = name.strip()
    tenant = tenant.strip() if tenant else None
    found = _check_account(name, role, tenant)
    if found:
        raise Rejected(found)
    return Client(client_id, name, Role(role), tenant, secret_hash, now)


def rotate_secret(client: Client, new_hash: str, now: datetime, grace: timedelta = timedelta(0)) -> Client:
    if not client.active:
        raise StateConflict(f"client {client.name} is revoked; add a new client instead")
    if grace < timedelta(0) or grace > timedelta(days=7):
        raise Rejected([Violation("grace", "between 0 and 7 days")])
    return replace(
        client,
        secret_hash=new_hash,
        rotated_at=now,
        previous_secret_hash=client.secret_hash if grace else None,
        previous_secret_until=now + grace if grace else None,
    )


def revoke_client(client: Client, now: datetime) -> Client:
    if not client.active:
        raise StateConflict(f"client {client.name} is already revoked")
    return replace(client, revoked_at=now, previous_secret_hash=None, previous_secret_until=None)


# --- people -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """Someone who signs in to the console with a name and a password."""

    person_id: str
    username: str
    role: Role
    tenant: str | None
    password_hash: str
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def public(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "username": self.username,
            "role": self.role.value,
            "tenant": self.tenant,
            "created_at": _iso(self.created_at),
            "password_changed_at": _iso(self.password_changed_at),
            "disabled_at": _iso(self.disabled_at),
        }


def password_problems(password: str, username: str) -> list[Violation]:
    found = []
    if len(password) < MIN_PASSWORD_LENGTH:
        found.append(Violation("password", f"at least {MIN_PASSWORD_LENGTH} characters"))
    if len(password) > MAX_PASSWORD_LENGTH:
        found.append(Violation("password", f"at most {MAX_PASSWORD_LENGTH} characters"))
    if username and username.lower() in password.lower():
        found.append(Violation("password", "must not contain the username"))
    return found


def check_new_person(username: str, role: str, tenant: str | None, password: str) -> list[Violation]:
    """Everything wrong with a new person, checked before the password is hashed (hashing is slow on purpose)."""
    return _check_account(username.strip(), role, tenant.strip() if tenant else None) + password_problems(
        password, username.strip()
    )


def new_person(person_id: str, username: str, role: str, tenant: str | None, password_hash: str, now: datetime) -> Person:
    username = username.strip()
    tenant = tenant.strip() if tenant else None
    found = _check_account(username, role, tenant)
    if found:
        raise Rejected(found)
    return Person(person_id, username, Role(role), tenant, password_hash, now, now)


def disable_person(person: Person, now: datetime) -> Person:
    if not person.active:
        raise StateConflict(f"{person.username} is already disabled")
    return replace(person, disabled_at=now)


def change_password(person: Person, password_hash: str, now: datetime) -> Person:
    if not person.active:
        raise StateConflict(f"{person.username} is disabled")
    return replace(person, password_hash=password_hash, password_changed_at=now)


# --- sign-in sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInSession:
    """A person's sign-in, renewable with its current refresh token (rotated on every use) until it is ended
    (sign-out, a stolen token replayed, the person disabled) or reaches its absolute limit."""

    session_id: str
    person_id: str
    started_at: datetime
    ends_at: datetime
    refresh_hash: str
    previous_hash: str | None = None
    rotated_at: datetime | None = None
    ended_at: datetime | None = None

    def open_at(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.ends_at

    def replayed(self, now: datetime, grace: timedelta) -> bool:
        """The previous refresh token came back after the grace: someone else holds a copy. Within the grace it
        is two requests of one console renewing at once (a page and its fragments), not a theft."""
        return self.rotated_at is not None and now - self.rotated_at > grace


def start_session(session_id: str, person_id: str, token_hash: str, now: datetime, limit: timedelta) -> SignInSession:
    return SignInSession(session_id, person_id, now, now + limit, token_hash)


def rotate_refresh(sign_in: SignInSession, token_hash: str, now: datetime) -> SignInSession:
    if not sign_in.open_at(now):
        raise StateConflict("the sign-in has ended")
    return replace(sign_in, refresh_hash=token_hash, previous_hash=sign_in.refresh_hash, rotated_at=now)


def end_session(sign_in: SignInSession, now: datetime) -> SignInSession:
    return sign_in if sign_in.ended_at is not None else replace(sign_in, ended_at=now)


# --- access tokens ----------------------------------------------------------------------------------


def access_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    role: Role,
    tenant: str | None,
    now: datetime,
    ttl: timedelta,
    token_id: str,
    client_id: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """The claims of an access token (RFC 9068's JWT profile, plus `roles` and the tenant)."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": token_id,
        "roles": [role.value],
    }
    tenant_claim = TENANT_OF.get(role)
    if tenant_claim is not None:
        claims[tenant_claim.value] = tenant
    if client_id is not None:
        claims["client_id"] = client_id
    if username is not None:
        claims["preferred_username"] = username
    return claims


# --- signing keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A key the issuer signs with (while active) and publishes in its JWKS (while its tokens may live)."""

    kid: str
    public_jwk: Mapping[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    from_file: bool = False

    @property
    def active(self) -> bool:
        return self.retired_at is None


def published_keys(keys: Sequence[SigningKey], now: datetime, token_ttl: timedelta, leeway: timedelta) -> list[SigningKey]:
    """Keys to publish: the active one, and retired ones whose last tokens have not expired yet."""
    return [k for k in keys if k.retired_at is None or k.retired_at + token_ttl + leeway > now]


def retire(keys: Sequence[SigningKey], keep: str, now: datetime) -> list[SigningKey]:
    """The active keys other than `keep`, retired now: one key signs at a time."""
    return [replace(k, retired_at=now) for k in keys if k.active and k.kid != keep]


# --- the token endpoint (RFC 6749) ------------------------------------------------------------------


class TokenError(Exception):
    """An error answer of the token endpoint (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def invalid_client() -> TokenError:
    # One answer for an unknown client, a wrong secret and a revoked client: nothing tells them apart.
    return TokenError("invalid_client", "client authentication failed", 401)


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    secret: str
    method: str  # client_secret_basic or client_secret_post


def client_credentials(authorization: str | None, form: Mapping[str, str]) -> ClientCredentials:
    """The client's id and secret from the Authorization header (Basic) or the form body, never both."""
    posted = "client_id" in form or "client_secret" in form
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise invalid_client()
        if posted and "client_secret" in form:
            raise TokenError("invalid_request", "authenticate with one method only: Basic or the form body")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client() from None
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            raise invalid_client()
        # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if "client_id" in form and form["client_id"] != client_id:
            raise TokenError("invalid_request", "client_id in the body differs from the authenticated client")
        if not client_id or not secret:
            raise invalid_client()
        return ClientCredentials(client_id, secret, "client_secret_basic")
    if posted:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not secret:
            raise invalid_client()
        return ClientCredentials(client_id, secret, "client_secret_post")
    raise invalid_client()


def token_request(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The token request's parameters; each may appear once (RFC 6749 §3.2), and the grant must be ours."""
    params: dict[str, str] = {}
    for name, value in form:
        if name in params:
            raise TokenError("invalid_request", f"parameter {name} is repeated")
        params[name] = value
    grant_type = params.get("grant_type")
    if not grant_type:
        raise TokenError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise TokenError(
            "unsupported_grant_type", "only the client_credentials grant is served here; people sign in at /v1/sessions"
        )
    if params.get("scope"):
        # Scopes are not used: a client's role decides what it may do. An empty or absent scope is fine.
        raise TokenError("invalid_scope", "no scopes are granted here; a client's role decides what it may do")
    return params


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
