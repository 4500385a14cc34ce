"""People sign in to the console: the login page, the sealed session cookie, CSRF on every form, the rule every
route declares, the person's token passed on to the services, its renewal with the refresh token sealed in the
cookie (once for the requests a page makes at once; the refresh token never leaves the console unsealed), signing
out at identity, and the way back to the login page when the sign-in ends. The identity service and the orders
service are stood in for by an httpx mock transport; tokens are real ES256 tokens from a test key the console
trusts."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from services.console import api
from services.console.app import create_app
from services.console.people import CSRF_COOKIE, SESSION_COOKIE, SessionKeys, SignedIn
from shared.auth import install_verifier, rule_of
from shared.roles import Role
from shared.settings import Settings
from tests.fixtures.tokens import TokenMint

IDENTITY = "http://identity.test"
ORDERS = "http://orders.test"
PASSWORD = "batur-jaya-demo"


class Services:
    """The identity and orders services as the console sees them: answers, and what they were sent."""

    def __init__(self, mint: TokenMint) -> None:
        self.mint = mint
        self.people: dict[str, dict[str, Any]] = {
            "planner": {"roles": ["planner"]},
            "ikm-001": {"roles": ["foundry"], "foundry_code": "IKM-001"},
            "kai-person": {"roles": ["buyer"], "buyer_code": "KAI"},
        }
        self.locked = False
        self.refuse: int | None = None  # what the orders service answers every call with, when set
        self.ttl_s = 600
        self.age_s = 0  # how long before now identity issued the tokens it hands out
        self.sign_ins: list[httpx.Request] = []
        self.issued: list[str] = []
        self.calls: list[httpx.Request] = []
        self.refresh: dict[str, str] = {}  # the live refresh tokens, and whose they are
        self.renewals: list[str] = []  # the refresh tokens identity was asked to renew with
        self.ended: list[str] = []

    def _tokens(self, username: str) -> dict[str, Any]:
        person = self.people[username]
        token = self.mint.token(
            subject=f"person-{username}",
            preferred_username=username,
            ttl_s=self.ttl_s,
            issued_at=time.time() - self.age_s,
            **person,
        )
        self.issued.append(token)
        refresh = f"refresh-{len(self.issued)}-{username}"
        self.refresh[refresh] = username
        return {"access_token": token, "token_type": "Bearer", "expires_in": 600, "refresh_token": refresh,
                "refresh_expires_in": 43200, "username": username, **person}  # fmt: skip

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test" and request.url.path == "/v1/sessions":
            self.sign_ins.append(request)
            if self.locked:
                problem = {"title": "Too many failed sign-ins", "status": 429, "detail": "Wait 15 minute(s)"}
                return httpx.Response(429, json=problem, headers={"retry-after": "900"})
            body = json.loads(request.content)
            person = self.people.get(body["username"])
            if person is None or body["password"] != PASSWORD:
                return httpx.Response(401, json={"title": "Sign-in failed", "status": 401})
            return httpx.Response(200, json=self._tokens(body["username"]))
        if request.url.host == "identity.test" and request.url.path == "/v1/sessions/renew":
            presented = json.loads(request.content)["refresh_token"]
            self.renewals.append(presented)
            username = self.refresh.pop(presented, None)  # spent on use
            if username is None:
                return httpx.Response(401, json={"title": "Renewal refused", "status": 401})
            return httpx.Response(200, json=self._tokens(username))
        if request.url.host == "identity.test" and request.url.path == "/v1/sessions/end":
            presented = json.loads(request.content)["refresh_token"]
            self.ended.append(presented)
            self.refresh.pop(presented, None)
            return httpx.Response(204)
        self.calls.append(request)
        if self.refuse:
            return httpx.Response(self.refuse, json={"title": "Refused", "status": self.refuse})
        if request.url.path == "/v1/purchase-orders":
            return httpx.Response(200, json={"items": [], "total": 0, "limit": 25, "offset": 0})
        return httpx.Response(404, json={"title": "Not found", "status": 404})


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


@pytest.fixture
def services(mint: TokenMint) -> Services:
    return Services(mint)


def settings_for(tmp_path: Any, **overrides: Any) -> Settings:
    return Settings(**{"env": "test", "var_dir": tmp_path, "identity_url": IDENTITY, "orders_url": ORDERS, **overrides})


@asynccontextmanager
async def console_over(
    handle: Callable[[httpx.Request], httpx.Response], mint: TokenMint, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The console in-process, trusting `mint`'s tokens, its calls to the services answered by `handle`."""
    app = create_app(settings)
    install_verifier(app, mint.verifier())
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    app.state.runtime.state["http"] = upstream
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        yield client
    await upstream.aclose()


@pytest.fixture
async def console(tmp_path: Any, mint: TokenMint, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(tmp_path))
    install_verifier(app, mint.verifier())
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(services.handle))
    app.state.runtime.state["http"] = upstream
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)), base_url="http://console"
    ) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client
    await upstream.aclose()


def token_in(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


async def sign_in(
    console: httpx.AsyncClient, username: str = "planner", password: str = PASSWORD, target: str = "/"
) -> httpx.Response:
    page = await console.get("/login", params={"next": target})
    form = {"csrftoken": token_in(page.text), "username": username, "password": password, "next": target}
    return await console.post("/login", data=form)


# --- every route has a rule -----------------------------------------------------------------------------------------


def test_every_console_route_declares_who_may_use_it():
    routes = [r for r in api.router.routes if isinstance(r, APIRoute)]
    rules = {r.path: rule_of(r) for r in routes}
    assert len(rules) > 25 and all(rule is not None for rule in rules.values()), [p for p, r in rules.items() if r is None]
    public = sorted(p for p, r in rules.items() if r is not None and r.public)
    assert public == ["/language", "/login", "/logout"]
    assert rules["/operations"].roles == {Role.ADMIN}  # type: ignore[union-attr]
    assert rules["/quality/override"].roles == {Role.QA_OFFICER}  # type: ignore[union-attr]
    assert rules["/members/{code}/capacity-changes"].roles == {Role.ADMIN, Role.PLANNER, Role.FOUNDRY}  # type: ignore[union-attr]
    assert not any(Role.BUYER in (r.roles if r else ()) for r in rules.values())  # buyers use the API, not the console


# --- not signed in --------------------------------------------------------------------------------------------------


async def test_every_page_sends_a_stranger_to_the_login_page(console: httpx.AsyncClient):
    for path in ("/", "/orders/po_1", "/members", "/quality", "/operations", "/exports/orders.csv"):
        response = await console.get(path)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}", path
    partial = await console.get(
        "/orders/po_1/live", headers={"hx-request": "true", "hx-current-url": "http://console/orders/po_1"}
    )
    assert partial.status_code == 401 and partial.headers["hx-redirect"] == "/login?next=/orders/po_1"
    for path in ("/v1/events/recent", "/live"):
        refused = await console.get(path)
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == 'Bearer realm="ceper"'


async def test_the_login_page_speaks_indonesian_and_english_on_the_switch(console: httpx.AsyncClient):
    page = await console.get("/login")
    assert page.status_code == 200 and '<html lang="id">' in page.text and "Kata sandi" in page.text
    assert CSRF_COOKIE in page.cookies
    switched = await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/login"})
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    english = await console.get("/login")
    assert '<html lang="en">' in english.text and "Password" in english.text and "Kata sandi" not in english.text


# --- signing in -----------------------------------------------------------------------------------------------------


async def test_signing_in_sets_a_sealed_http_only_cookie_and_goes_where_the_person_was_going(
    console: httpx.AsyncClient, services: Services
):
    response = await sign_in(console, target="/orders?status=accepted")
    assert response.status_code == 303 and response.headers["location"] == "/orders?status=accepted"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # Secure in production only
    assert services.issued[0] not in cookie and "eyJ" not in cookie  # the token is inside, sealed: not readable
    # The person's own address goes to identity, so its per-address limit counts people, not the console.
    assert services.sign_ins[0].headers["x-forwarded-for"] == "203.0.113.7"
    page = await console.get("/orders")
    assert page.status_code == 200 and "planner" in page.text and "Keluar" in page.text


async def test_the_services_are_called_with_the_signed_in_persons_own_token(console: httpx.AsyncClient, services: Services):
    await sign_in(console)
    await console.get("/orders")
    assert services.calls, "the orders page read no service"
    sent = {request.headers.get("authorization") for request in services.calls}
    assert len(sent) == 1 and (value := sent.pop()) is not None and value.startswith("Bearer ")
    assert value == f"Bearer {services.issued[0]}"


async def test_the_services_own_rules_apply_to_what_the_console_shows(console: httpx.AsyncClient, services: Services):
    await sign_in(console)
    services.refuse = 403  # the service's rule does not let this role read it
    forbidden = await console.get("/orders")
    assert forbidden.status_code == 403 and "Tidak diizinkan" in forbidden.text
    services.refuse = 401  # the service no longer accepts the token: the person signs in again
    ended = await console.get("/orders")
    assert ended.status_code == 303 and ended.headers["location"] == "/login?next=/orders&ended=1"


@pytest.mark.parametrize(("username", "password"), [("planner", "wrong-password"), ("nobody-here", PASSWORD)])
async def test_a_refused_sign_in_reads_the_same_whether_or_not_the_account_exists(
    console: httpx.AsyncClient, username: str, password: str
):
    response = await sign_in(console, username, password)
    assert response.status_code == 401 and SESSION_COOKIE not in response.cookies
    assert "Nama pengguna atau kata sandi salah, atau akun dinonaktifkan." in response.text
    assert f'value="{username}"' in response.text and password not in response.text  # the name is kept, never the password


async def test_a_locked_sign_in_says_how_long_to_wait_without_naming_the_account(console: httpx.AsyncClient, services: Services):
    services.locked = True
    response = await sign_in(console, "nobody-here", "whatever-it-is")
    assert response.status_code == 429 and response.headers["retry-after"] == "900"
    assert "Terlalu banyak percobaan masuk yang gagal untuk nama ini atau dari alamat ini. Tunggu 15 menit" in response.text


async def test_a_buyer_account_is_not_let_into_the_console(console: httpx.AsyncClient):
    response = await sign_in(console, "kai-person")
    assert response.status_code == 403 and "Akun ini tidak dapat memakai konsol." in response.text
    assert SESSION_COOKIE not in response.cookies


async def test_a_login_form_without_its_csrf_token_is_refused_before_identity_is_asked(
    console: httpx.AsyncClient, services: Services
):
    await console.get("/login")
    response = await console.post("/login", data={"username": "planner", "password": PASSWORD})
    assert response.status_code == 403 and "Formulir sudah kedaluwarsa" in response.text
    assert services.sign_ins == []


async def test_a_login_redirect_never_leaves_the_console(console: httpx.AsyncClient):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = await sign_in(console, target=target)
        assert response.headers["location"] == "/", target


# --- signed in ------------------------------------------------------------------------------------------------------


async def test_every_form_post_needs_the_csrf_token_of_the_page(console: httpx.AsyncClient):
    await sign_in(console)
    without = await console.post("/orders/po_1/replan", data={"reason": "capacity added", "key": "k1"})
    assert without.status_code == 403 and "Formulir sudah kedaluwarsa" in without.text
    forged = await console.post("/orders/po_1/replan", data={"reason": "x", "key": "k1", "csrftoken": "forged"})
    assert forged.status_code == 403


async def test_a_role_sees_only_its_pages(console: httpx.AsyncClient):
    await sign_in(console, "ikm-001")
    home = await console.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/members"
    members = await console.get("/members")
    assert members.status_code == 303 and members.headers["location"] == "/members/IKM-001"
    for path in ("/orders", "/operations", "/shipments"):
        page = await console.get(path)
        assert page.status_code == 403 and "Tidak diizinkan" in page.text, path
    api_call = await console.get("/v1/services")
    assert api_call.status_code == 403 and api_call.headers["content-type"] == "application/problem+json"


async def test_an_expired_token_sends_the_person_back_to_sign_in(console: httpx.AsyncClient, services: Services):
    services.ttl_s = -60  # identity's token has expired (beyond the verifier's leeway) by the time it is used
    await sign_in(console)
    response = await console.get("/orders")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/orders&ended=1"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]  # the dead session is cleared
    page = await console.get(response.headers["location"])
    assert "Sesi Anda sudah berakhir. Silakan masuk lagi." in page.text


async def test_an_altered_or_foreign_cookie_is_nobody(console: httpx.AsyncClient, tmp_path: Any, mint: TokenMint):
    foreign = SessionKeys("another console's secret").seal(SignedIn(mint.token(), "planner", time.time()))
    console.cookies.set(SESSION_COOKIE, foreign)
    assert (await console.get("/orders")).status_code == 303
    console.cookies.clear()
    await sign_in(console)
    sealed = console.cookies[SESSION_COOKIE]
    console.cookies.delete(SESSION_COOKIE)
    console.cookies.set(SESSION_COOKIE, sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"))
    assert (await console.get("/orders")).status_code == 303


async def test_signing_out_clears_the_session(console: httpx.AsyncClient):
    page = await sign_in(console)
    page = await console.get("/orders")
    response = await console.post("/logout", data={"csrftoken": token_in(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/login?out=1"
    assert (await console.get("/orders")).status_code == 303
    assert "Anda sudah keluar." in (await console.get("/login?out=1")).text


def test_production_needs_a_session_secret_and_elsewhere_one_is_kept_under_var(tmp_path):
    with pytest.raises(RuntimeError, match="CEPER_CONSOLE_SESSION_SECRET"):
        create_app(settings_for(tmp_path, env="production"))
    sealed = SessionKeys.from_settings(settings_for(tmp_path)).seal(SignedIn("t", "planner", time.time()))
    again = SessionKeys.from_settings(settings_for(tmp_path))  # a restart, or a second replica on this machine
    assert again.open(sealed, 3600) == SignedIn("t", "planner", again.open(sealed, 3600).signed_in_at)  # type: ignore[union-attr]
    assert (tmp_path / "console-session.key").stat().st_mode & 0o077 == 0


async def test_production_cookies_are_secure(tmp_path, mint: TokenMint, services: Services):
    app = create_app(settings_for(tmp_path, env="production", console_session_secret="s" * 40))
    install_verifier(app, mint.verifier())
    app.state.runtime.state["http"] = httpx.AsyncClient(transport=httpx.MockTransport(services.handle))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console") as client:
        page = await client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        response = await sign_in(client)
    session = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "Secure" in session and "HttpOnly" in session


# --- renewal ----------------------------------------------------------------------------------------------------------


def sealed_session(console: httpx.AsyncClient, value: str | None = None) -> SignedIn | None:
    keys: SessionKeys = console.app.state.session_keys  # type: ignore[attr-defined]
    return keys.open((value or console.cookies[SESSION_COOKIE]).strip('"'), 3600)  # the jar keeps the quotes


async def test_a_token_past_half_its_life_is_renewed_and_the_new_one_sealed_in_the_cookie(
    console: httpx.AsyncClient, services: Services
):
    services.age_s = 400  # of 600 s: past half its life
    await sign_in(console)
    before = sealed_session(console)
    assert before is not None and before.refresh == "refresh-1-planner"
    services.age_s = 0
    page = await console.get("/orders")
    assert page.status_code == 200
    assert services.renewals == ["refresh-1-planner"]
    after = sealed_session(console)
    assert after is not None and after.token == services.issued[1] and after.refresh == "refresh-2-planner"
    assert after.signed_in_at == before.signed_in_at  # renewing does not move the sign-in's own limit
    # The services were called with the new token, and the fresh token is not renewed again.
    assert services.calls[-1].headers["authorization"] == f"Bearer {services.issued[1]}"
    await console.get("/orders")
    assert services.renewals == ["refresh-1-planner"]
    # The refresh token reaches the browser only sealed.
    for text in (page.text, str(page.headers)):
        assert "refresh-1-planner" not in text and "refresh-2-planner" not in text


async def test_an_expired_token_is_renewed_rather_than_ending_the_sign_in(console: httpx.AsyncClient, services: Services):
    services.ttl_s = -60  # the person came back after the access token expired
    await sign_in(console)
    services.ttl_s = 600
    page = await console.get("/orders")
    assert page.status_code == 200 and services.renewals == ["refresh-1-planner"]


async def test_a_refused_renewal_of_an_expired_token_sends_the_person_to_sign_in(console: httpx.AsyncClient, services: Services):
    services.ttl_s = -60
    await sign_in(console)
    services.refresh.clear()  # identity ended the sign-in (signed out elsewhere, disabled, past its limit)
    response = await console.get("/orders")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/orders&ended=1"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]


async def test_a_refused_renewal_of_a_still_valid_token_keeps_the_page(console: httpx.AsyncClient, services: Services):
    services.age_s = 400
    await sign_in(console)
    services.refresh.clear()
    assert (await console.get("/orders")).status_code == 200


async def test_the_requests_of_one_page_share_one_renewal(console: httpx.AsyncClient, services: Services):
    services.age_s = 400
    await sign_in(console)
    # Sent as a browser sends a page's requests: all with the cookie it held before any answer came back.
    requests = [console.build_request("GET", path) for path in ("/orders", "/feed", "/orders?page=2")]
    answers = await asyncio.gather(*(console.send(request) for request in requests))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert services.renewals == ["refresh-1-planner"]  # one call to identity, the token spent once


async def test_signing_out_ends_the_sign_in_at_identity(console: httpx.AsyncClient, services: Services):
    await sign_in(console)
    page = await console.get("/orders")
    response = await console.post("/logout", data={"csrftoken": token_in(page.text)})
    assert response.status_code == 303 and services.ended == ["refresh-1-planner"]
    assert "refresh-1-planner" not in services.refresh


async def test_an_order_that_does_not_exist_is_not_found_though_its_parts_are_read_at_once(
    console: httpx.AsyncClient, services: Services
):
    await sign_in(console)
    page = await console.get("/orders/po_nowhere")
    assert page.status_code == 404
    asked = {request.url.path for request in services.calls}
    assert {"/v1/purchase-orders/po_nowhere", "/v1/purchase-orders/po_nowhere/plans"} <= asked  # one round trip
