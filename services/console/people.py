"""Who is using the console, and in which language: the one place a page learns "the current person".

A person signs in with the identity service and gets an access token and a refresh token; the console keeps both
in a session cookie it seals itself (Fernet: encrypted and authenticated, so the browser can neither read nor alter
it; the cookie is HttpOnly and SameSite=Lax, Secure in production). Every request opens the cookie and verifies the
token against the issuer's keys like any service does; once the token is past half its life (or expired) the
console renews it with the refresh token and seals the new pair into the cookie of the answer. A sign-in that can
no longer be renewed sends the person back to the login page. A route declares who may use it with `allowed(action)`, which `shared.auth.rule_of` reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from base64 import urlsafe_b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Request
from starlette.responses import Response

from shared.auth import AuthFailure, KeysUnavailable, Principal, RouteRule, verifier_of
from shared.roles import Role
from shared.settings import Settings

from .domain import ACTIONS, CONSOLE_ROLES, Person
from .i18n import Translator, pick_locale
from .store import UpstreamProblem, renew

RENEWED = "renewed_session"  # request.state: the renewed session the answer's cookie must carry

LANGUAGE_COOKIE = "ceper_lang"
SESSION_COOKIE = "ceper_session"
CSRF_COOKIE = "ceper_csrf"
CSRF_FIELD = "csrftoken"  # the form field; htmx requests may send the header `X-CSRFToken` instead
# When a person holds several roles, the console shows them the widest view.
ROLE_ORDER = ("admin", "planner", "qa_officer", "lab", "foundry", "buyer")


# --- the session cookie ---------------------------------------------------------------------------------------


class SessionKeys:
    """The console's secrets, derived from one: the key that seals session cookies and the CSRF signing key."""

    def __init__(self, secret: str) -> None:
        self._sealer = Fernet(urlsafe_b64encode(_derive(secret, b"ceper console session cookie")))
        self.csrf_secret = _derive(secret, b"ceper console csrf").hex()

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionKeys:
        if settings.console_session_secret is not None:
            return cls(settings.console_session_secret.get_secret_value())
        if settings.env == "production":
            raise RuntimeError("set CEPER_CONSOLE_SESSION_SECRET (or CEPER_CONSOLE_SESSION_SECRET_FILE) for the console")
        return cls(_local_secret(Path(settings.var_dir) / "console-session.key"))

    def seal(self, session: SignedIn) -> str:
        payload = {"t": session.token, "u": session.username, "at": session.signed_in_at, "r": session.refresh}
        return self._sealer.encrypt(json.dumps(payload).encode()).decode("ascii")

    def open(self, sealed: str, max_age_s: float) -> SignedIn | None:
        """The session the cookie holds, or None when it was not sealed here, was altered or is too old."""
        try:
            payload = json.loads(self._sealer.decrypt(sealed.encode("ascii"), ttl=int(max_age_s)))
            refresh = payload.get("r")
            return SignedIn(str(payload["t"]), str(payload["u"]), float(payload["at"]), str(refresh) if refresh else None)
        except (InvalidToken, ValueError, KeyError, TypeError, UnicodeError):
            return None


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())


def _local_secret(path: Path) -> str:
    """A secret kept in a file under var/, made once, so restarts and local replicas keep people signed in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as out:
        secret = secrets.token_urlsafe(32)
        out.write(secret)
    return secret


@dataclass(frozen=True)
class SignedIn:
    """What the session cookie holds: the person's access token, their name, when they signed in, and the refresh
    token that renews the access token (identity rotates it on every use)."""

    token: str
    username: str
    signed_in_at: float
    refresh: str | None = field(default=None, repr=False)


def set_session_cookie(response: Response, keys: SessionKeys, session: SignedIn, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        keys.seal(session),
        httponly=True,
        samesite="lax",
        secure=settings.env == "production",
        path="/",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.env == "production")


def session_keys(request: Request) -> SessionKeys:
    return request.app.state.session_keys  # type: ignore[no-any-return]


# --- the person ---------------------------------------------------------------------------------------------------


def person_of(principal: Principal, until: float | None = None) -> Person:
    role = next((r for r in ROLE_ORDER if Role(r) in principal.roles), "")
    tenant = principal.foundry_code if role == "foundry" else principal.buyer_code if role == "buyer" else None
    name = str(principal.claims.get("preferred_username") or principal.subject)
    return Person(subject=principal.subject, name=name, role=role, tenant=tenant, until=until)


class SignInNeeded(Exception):
    """Nobody is signed in, or the sign-in has ended: pages send the person to the login page."""

    def __init__(self, ended: bool = False) -> None:
        super().__init__("sign in to use the console")
        self.ended = ended


class NotPermitted(Exception):
    """The person's role may not use this page or action."""

    def __init__(self, person: Person) -> None:
        super().__init__(f"the role {person.role!r} may not do this")
        self.person = person


async def current_person(request: Request) -> Person | None:
    """The signed-in person (from the session cookie, or a bearer token for API callers), or None."""
    if hasattr(request.state, "person"):
        return request.state.person  # type: ignore[no-any-return]
    person = None
    token = _bearer(request)
    session = None
    if token is None and (sealed := request.cookies.get(SESSION_COOKIE)):
        settings = request.app.state.runtime.settings
        session = session_keys(request).open(sealed, settings.console_session_hours * 3600)
        token = session.token if session is not None else None
        request.state.session_ended = session is None
    if token is not None:
        principal = await _verified(request, token)
        if session is not None and session.refresh and (principal is None or _past_half_life(principal)):
            try:
                renewed = await renewals(request).renew(request, session)
            except UpstreamProblem:
                if principal is None:
                    raise
                renewed = None  # identity is unavailable: the token still valid serves until it comes back
            if renewed is not None:
                token, principal = renewed.token, await _verified(request, renewed.token)
                setattr(request.state, RENEWED, renewed)
        if principal is None:
            request.state.session_ended = True
        else:
            exp = principal.claims.get("exp")
            person = person_of(principal, float(exp) if isinstance(exp, int | float) else None)
            request.state.authorization = f"Bearer {token}"
    request.state.person = person
    return person


async def _verified(request: Request, token: str) -> Principal | None:
    try:
        return await verifier_of(request.app).verify(token)
    except AuthFailure:
        return None
    except KeysUnavailable:
        raise UpstreamProblem("identity", 503, "Unavailable", "the identity service's keys cannot be read") from None


def _past_half_life(principal: Principal) -> bool:
    issued, expires = principal.claims.get("iat"), principal.claims.get("exp")
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        return False
    return time.time() >= issued + (expires - issued) / 2


class Renewals:
    """Renewing sign-ins, one call to identity per refresh token: the requests a page makes at once (the page, its
    feed, its stream) share one renewal instead of racing to spend the same token. Kept a minute per replica;
    requests that reach another replica meanwhile are refused by identity and keep their still-valid token."""

    KEEP_S = 60.0

    def __init__(self) -> None:
        self._pending: dict[str, tuple[float, asyncio.Future[SignedIn | None]]] = {}

    async def renew(self, request: Request, session: SignedIn) -> SignedIn | None:
        assert session.refresh is not None
        key = hashlib.sha256(session.refresh.encode()).hexdigest()
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if now - v[0] < self.KEEP_S}
        if key in self._pending:
            return await asyncio.shield(self._pending[key][1])
        future: asyncio.Future[SignedIn | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = (now, future)
        try:
            runtime = request.app.state.runtime
            answer = await renew(runtime.state["http"], runtime.settings, session.refresh)
            renewed: SignedIn | None = SignedIn(
                answer["access_token"], session.username, session.signed_in_at, answer.get("refresh_token")
            )
        except UpstreamProblem as problem:
            renewed = None
            if problem.status not in (400, 401, 403, 422):  # identity unavailable: not an answer to keep
                self._pending.pop(key, None)
                future.set_result(None)
                raise
        future.set_result(renewed)
        return renewed


def renewals(request: Request) -> Renewals:
    return request.app.state.renewals  # type: ignore[no-any-return]


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def allowed(action: str | None = None) -> Callable[..., Awaitable[Person]]:
    """A route's rule: a signed-in person whose role may do `action` (any role of the console when None)."""
    roles = ACTIONS[action] if action else CONSOLE_ROLES

    async def person_allowed(request: Request, person: Annotated[Person | None, Depends(current_person)]) -> Person:
        if person is None:
            raise SignInNeeded(ended=bool(getattr(request.state, "session_ended", False)))
        if person.role not in roles:
            raise NotPermitted(person)
        return person

    person_allowed.rule = RouteRule(frozenset(Role(r) for r in roles))  # type: ignore[attr-defined]  # read by rule_of()
    return person_allowed


def authorization_of(request: Request) -> str | None:
    """The person's token as the services expect it: `Bearer …`, passed on with every call made for them."""
    value: Any = getattr(request.state, "authorization", None)
    return value if isinstance(value, str) else None


async def _translator(request: Request) -> Translator:  # a coroutine: no hop to FastAPI's thread pool
    return translator_of(request)


def translator_of(request: Request) -> Translator:
    return Translator(pick_locale(request.cookies.get(LANGUAGE_COOKIE)))


def seconds_left(person: Person) -> float | None:
    return None if person.until is None else person.until - time.time()


Language = Annotated[Translator, Depends(_translator)]
# The rule of each kind of page and action; one dependency each, so FastAPI resolves it once per request.
AnyRole = Annotated[Person, Depends(allowed())]
DashboardViewer = Annotated[Person, Depends(allowed("dashboard.view"))]
OrdersViewer = Annotated[Person, Depends(allowed("orders.view"))]
OrdersDecider = Annotated[Person, Depends(allowed("orders.decide"))]
WhatIfAsker = Annotated[Person, Depends(allowed("orders.what_if"))]
ShipmentsViewer = Annotated[Person, Depends(allowed("shipments.view"))]
ShipmentsManager = Annotated[Person, Depends(allowed("shipments.manage"))]
MembersViewer = Annotated[Person, Depends(allowed("members.view"))]
CapacityReporter = Annotated[Person, Depends(allowed("capacity.report"))]
QualityViewer = Annotated[Person, Depends(allowed("quality.view"))]
QualityRecorder = Annotated[Person, Depends(allowed("quality.record"))]
QualityOverrider = Annotated[Person, Depends(allowed("quality.override"))]
ItemsViewer = Annotated[Person, Depends(allowed("items.view"))]
ItemsWriter = Annotated[Person, Depends(allowed("items.write"))]
BuyersViewer = Annotated[Person, Depends(allowed("buyers.view"))]
BuyersWriter = Annotated[Person, Depends(allowed("buyers.write"))]
Operator = Annotated[Person, Depends(allowed("operations.view"))]
