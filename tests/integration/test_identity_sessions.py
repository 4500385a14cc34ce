"""A person's sign-in renews itself: identity (a real process on SQLite and PostgreSQL) answers a sign-in with a
refresh token that renews the access token once and is rotated on every use; a spent token is refused, and ends
the sign-in when it comes back after the grace (a copy is loose); signing out and disabling the person end it too;
no refresh token is ever written to the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.auth import JwksKeys, TokenVerifier
from tests.integration.identity_support import Identity, identity_process

PASSWORD = "a planning pass phrase"
GRACE_S = 3.0


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def identity(request: pytest.FixtureRequest) -> Iterator[Identity]:
    url = request.getfixturevalue("postgres_server").create_database() if request.param == "postgresql" else None
    with identity_process(url, identity_refresh_grace_s=str(GRACE_S), log_level="INFO") as running:
        yield running


def person(identity: Identity, username: str) -> dict[str, str]:
    identity.add_person(username, "planner", PASSWORD)
    response = identity.sign_in(username, PASSWORD)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def renew(identity: Identity, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{identity.url}/v1/sessions/renew", json={"refresh_token": refresh_token}, timeout=30)


def subject_of(identity: Identity, token: str) -> str:
    discovery = httpx.get(f"{identity.url}/.well-known/openid-configuration").json()
    verifier = TokenVerifier(
        JwksKeys(discovery["jwks_uri"]), issuer=discovery["issuer"], audience="ceper-supply", algorithms=["ES256"]
    )
    return asyncio.run(verifier.verify(token)).subject


def test_a_sign_in_renews_with_a_refresh_token_that_is_rotated_on_every_use(identity: Identity):
    first = person(identity, "ani.planner")
    assert first["refresh_token"] and 11.9 * 3600 < first["refresh_expires_in"] <= 12 * 3600
    second = renew(identity, first["refresh_token"])
    assert second.status_code == 200 and second.headers["cache-control"] == "no-store"
    renewed = second.json()
    assert renewed["access_token"] != first["access_token"] and renewed["refresh_token"] != first["refresh_token"]
    assert subject_of(identity, renewed["access_token"]) == subject_of(identity, first["access_token"])
    assert renewed["username"] == "ani.planner" and renewed["roles"] == ["planner"]
    assert renewed["refresh_expires_in"] <= first["refresh_expires_in"]  # renewing never moves the sign-in's end
    # The spent token again at once (two requests of one console racing): refused, and the sign-in goes on.
    spent = renew(identity, first["refresh_token"])
    assert spent.status_code == 401 and spent.headers["content-type"] == "application/problem+json"
    third = renew(identity, renewed["refresh_token"])
    assert third.status_code == 200, third.text


def test_a_spent_refresh_token_coming_back_after_the_grace_ends_the_sign_in(identity: Identity):
    first = person(identity, "bayu.planner")
    renewed = renew(identity, first["refresh_token"]).json()
    time.sleep(GRACE_S + 0.5)
    assert renew(identity, first["refresh_token"]).status_code == 401  # a copy is loose: the thief gets nothing
    assert renew(identity, renewed["refresh_token"]).status_code == 401  # and the sign-in is over for everyone


def test_signing_out_and_disabling_the_person_end_the_sign_in(identity: Identity):
    signed_out = person(identity, "citra.planner")
    ended = httpx.post(f"{identity.url}/v1/sessions/end", json={"refresh_token": signed_out["refresh_token"]})
    assert ended.status_code == 204
    assert renew(identity, signed_out["refresh_token"]).status_code == 401
    # An unknown token ends nothing and says nothing.
    assert httpx.post(f"{identity.url}/v1/sessions/end", json={"refresh_token": "not-a-token"}).status_code == 204

    disabled = person(identity, "dewi.planner")
    assert identity.ceper("users", "disable", "dewi.planner").returncode == 0
    assert renew(identity, disabled["refresh_token"]).status_code == 401


def test_bad_renewals_are_problems_and_no_refresh_token_reaches_the_log(identity: Identity):
    for body in ({}, {"refresh_token": ""}, {"refresh_token": "x" * 500}, {"refresh_token": "t", "extra": 1}):
        response = httpx.post(f"{identity.url}/v1/sessions/renew", json=body)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json", body
    unknown = renew(identity, "a-token-nobody-issued")
    assert unknown.status_code == 401 and "a-token-nobody-issued" not in unknown.text
    issued = [person(identity, "eka.planner")["refresh_token"]]
    issued.append(renew(identity, issued[0]).json()["refresh_token"])
    renew(identity, issued[0])
    log = (Path(identity.env["CEPER_VAR_DIR"]) / "identity.log").read_text()
    assert "sign-in renewed" in log  # the log is written, and at INFO
    assert not [token for token in issued if token in log]
