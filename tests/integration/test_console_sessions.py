"""The console keeps a person signed in past one access token: identity (a real process) issues 30-second tokens,
the console (in-process, on the real broker) renews the token past half its life with the refresh token sealed in
its cookie, and signing out ends the sign-in at identity; neither the console's answers nor identity's log ever
show a refresh token."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from services.console.app import create_app as create_console
from services.console.people import SESSION_COOKIE, SignedIn
from tests.integration.identity_support import identity_process
from tests.support import run_service

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the console stores nothing; identity's store is tested on both

PASSWORD = "a planning pass phrase"


def opened(console: httpx.AsyncClient, app: object, response: httpx.Response) -> SignedIn:
    sealed = response.cookies.get(SESSION_COOKIE) or console.cookies[SESSION_COOKIE]
    session = app.state.session_keys.open(sealed.strip('"'), 3600)  # type: ignore[attr-defined]
    assert session is not None
    return session  # type: ignore[no-any-return]


async def test_a_person_stays_signed_in_past_one_token_and_signing_out_ends_it_at_identity(make_settings):
    with identity_process(identity_token_ttl_s="30", log_level="INFO") as identity:
        identity.add_person("sari.planner", "planner", PASSWORD)
        settings = make_settings(identity_url=identity.url, auth_issuer=None, auth_jwks_url=None)
        async with run_service(create_console, settings) as running:
            console, answers = running.http, []
            console.auth = httpx.Auth()  # the person's cookie, not a bearer token
            login = await console.get("/login")
            csrf = re.search(r'name="csrftoken" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
            signed_in = await console.post("/login", data={"csrftoken": csrf, "username": "sari.planner", "password": PASSWORD})
            assert signed_in.status_code == 303
            first = opened(console, running.app, signed_in)
            assert first.refresh

            await asyncio.sleep(16)  # past half of the 30-second token's life
            page = await console.get("/feed")
            answers += [login, signed_in, page]
            assert page.status_code == 200 and SESSION_COOKIE in page.cookies, "the renewed session was not sent back"
            second = opened(console, running.app, page)
            assert second.token != first.token and second.refresh not in (None, first.refresh)
            assert second.signed_in_at == first.signed_in_at

            out = await console.post("/logout", data={"csrftoken": csrf})
            answers.append(out)
            assert out.status_code == 303
            async with httpx.AsyncClient() as client:
                refused = await client.post(f"{identity.url}/v1/sessions/renew", json={"refresh_token": second.refresh})
            assert refused.status_code == 401  # the sign-in ended at identity, not only in this browser
            for answer in answers:
                shown = answer.text + str(answer.headers)
                assert first.refresh not in shown and str(second.refresh) not in shown
        log = (Path(identity.env["CEPER_VAR_DIR"]) / "identity.log").read_text()
        assert "sign-in renewed" in log and first.refresh not in log and str(second.refresh) not in log
