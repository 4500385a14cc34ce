"""The identity service as a real process on SQLite and PostgreSQL: the token endpoint (both client
authentication methods, wrong secret, revoked client, rotated secret), JWKS and discovery, people's sign-in
with its rate limit, the command line, and the audit trail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from joserfc import jws

from shared.auth import JwksKeys, Principal, TokenVerifier
from shared.roles import Role
from tests.integration.identity_support import Identity, bearer, identity_process

ADMIN_PASSWORD = "a long admin pass phrase"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def identity(request: pytest.FixtureRequest) -> Iterator[Identity]:
    url = request.getfixturevalue("postgres_server").create_database() if request.param == "postgresql" else None
    # A low per-name sign-in limit, so the rate-limit test needs few attempts.
    with identity_process(url, identity_login_limit="3/15 minutes") as running:
        running.add_person("root", "admin", ADMIN_PASSWORD)
        yield running


def verifier_for(identity: Identity) -> TokenVerifier:
    discovery = httpx.get(f"{identity.url}/.well-known/openid-configuration").json()
    return TokenVerifier(
        JwksKeys(discovery["jwks_uri"]), issuer=discovery["issuer"], audience="ceper-supply", algorithms=["ES256"]
    )


def verify(identity: Identity, token: str) -> Principal:
    return asyncio.run(verifier_for(identity).verify(token))


def admin_headers(identity: Identity) -> dict[str, str]:
    response = identity.sign_in("root", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


# --- the token endpoint -----------------------------------------------------------------------------


def test_client_secret_basic_gets_a_short_lived_es256_token_for_its_tenant(identity: Identity):
    client = identity.add_client("kai-basic", "buyer", "KAI")
    response = httpx.post(
        f"{identity.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (
        body["token_type"] == "Bearer" and body["expires_in"] == 600 and set(body) == {"access_token", "token_type", "expires_in"}
    )
    header = jws.extract_compact(body["access_token"].encode()).protected
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt"
    assert header["kid"] in {k["kid"] for k in httpx.get(f"{identity.url}/.well-known/jwks.json").json()["keys"]}
    principal = verify(identity, body["access_token"])
    assert principal.roles == {Role.BUYER} and principal.buyer_code == "KAI" and principal.client_id == client["client_id"]
    claims = principal.claims
    assert claims["iss"] == identity.url and claims["aud"] == "ceper-supply" and claims["sub"] == client["client_id"]
    assert claims["exp"] - claims["iat"] == 600 and len(claims["jti"]) >= 16


def test_client_secret_post_gets_a_token(identity: Identity):
    client = identity.add_client("b4t-lab", "lab")
    response = httpx.post(
        f"{identity.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"]},
    )
    assert response.status_code == 200
    assert (verify(identity, response.json()["access_token"])).roles == {Role.LAB}


def test_a_wrong_secret_and_an_unknown_client_get_the_same_401(identity: Identity):
    client = identity.add_client("inka-wrong", "buyer", "INKA")
    answers = [
        httpx.post(
            f"{identity.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "not-the-secret")
        ),
        httpx.post(f"{identity.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("nobody-1234", "whatever")),
    ]
    for response in answers:
        assert response.status_code == 401 and response.json() == {
            "error": "invalid_client",
            "error_description": "client authentication failed",
        }
        assert response.headers["www-authenticate"].startswith("Basic realm=") and response.headers["cache-control"] == "no-store"
    posted = httpx.post(
        f"{identity.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": "x"},
    )
    assert posted.status_code == 401 and posted.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "everything"}, "invalid_scope"),
    ],
)
def test_bad_token_requests_answer_rfc_6749_errors(identity: Identity, data: dict[str, str], error: str):
    client = identity.add_client(f"kai-{error.replace('_', '-')}", "buyer", "KAI")
    response = httpx.post(f"{identity.url}/oauth/token", data=data, auth=(client["client_id"], client["client_secret"]))
    assert response.status_code == 400 and response.json()["error"] == error


def test_a_token_request_that_is_not_a_form_is_invalid(identity: Identity):
    response = httpx.post(f"{identity.url}/oauth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_revoked_client_gets_no_new_tokens(identity: Identity):
    client = identity.add_client("kai-revoked", "buyer", "KAI")
    earlier = identity.token(client["client_id"], client["client_secret"])
    done = identity.ceper("clients", "revoke", client["name"])
    assert done.returncode == 0 and "Revoked client kai-revoked" in done.stdout
    refused = httpx.post(
        f"{identity.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    # A token issued before the revocation lives out its few minutes: that is why tokens are short-lived.
    assert (verify(identity, earlier)).subject == client["client_id"]
    again = identity.ceper("clients", "revoke", client["name"])
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_a_rotated_secret_replaces_the_old_one(identity: Identity):
    client = identity.add_client("inka-rotated", "buyer", "INKA")
    done = identity.ceper("clients", "rotate", client["client_id"], "--json")
    assert done.returncode == 0, done.stderr
    new_secret = json.loads(done.stdout)["client_secret"]
    assert new_secret != client["client_secret"]
    old = httpx.post(
        f"{identity.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert old.status_code == 401
    assert identity.token(client["client_id"], new_secret)


def test_a_rotation_with_grace_keeps_the_old_secret_working_for_a_while(identity: Identity):
    client = identity.add_client("kai-graceful", "buyer", "KAI")
    done = identity.ceper("clients", "rotate", client["name"], "--grace-minutes", "30", "--json")
    assert done.returncode == 0, done.stderr
    assert identity.token(client["client_id"], client["client_secret"])
    assert identity.token(client["client_id"], json.loads(done.stdout)["client_secret"])


# --- discovery --------------------------------------------------------------------------------------


def test_discovery_names_the_issuer_the_token_endpoint_and_the_jwks(identity: Identity):
    document = httpx.get(f"{identity.url}/.well-known/openid-configuration").json()
    assert document["issuer"] == identity.url
    assert document["token_endpoint"] == f"{identity.url}/oauth/token"
    assert document["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert document["grant_types_supported"] == ["client_credentials"]
    jwks = httpx.get(document["jwks_uri"])
    keys = jwks.json()["keys"]
    assert keys and all(k["kty"] == "EC" and k["crv"] == "P-256" and k["alg"] == "ES256" and k["kid"] for k in keys)
    assert not any("d" in k for k in keys)  # never a private part
    assert httpx.get(f"{identity.url}/.well-known/oauth-authorization-server").json() == document


# --- people -----------------------------------------------------------------------------------------


def test_a_person_signs_in_and_gets_a_token_with_the_role(identity: Identity):
    identity.add_person("joko.ikm", "foundry", "a foundry pass phrase", tenant="IKM-007")
    response = identity.sign_in("joko.ikm", "a foundry pass phrase")
    assert response.status_code == 200
    body = response.json()
    assert body["roles"] == ["foundry"] and body["foundry_code"] == "IKM-007" and body["username"] == "joko.ikm"
    principal = verify(identity, body["access_token"])
    assert principal.roles == {Role.FOUNDRY} and principal.foundry_code == "IKM-007"


def test_failed_sign_ins_lock_out_known_and_unknown_names_alike(identity: Identity):
    identity.add_person("siti.qa", "qa_officer", "a quality pass phrase")
    answers = {}
    for name in ("siti.qa", "nobody.here"):
        failures = [identity.sign_in(name, "wrong password here") for _ in range(3)]
        assert [r.status_code for r in failures] == [401, 401, 401]
        assert failures[0].json()["detail"] == "The name or the password is not right, or the account is disabled."
        answers[name] = identity.sign_in(name, "a quality pass phrase")  # the right password, too late
    for locked in answers.values():
        assert locked.status_code == 429 and locked.headers["content-type"] == "application/problem+json"
        assert int(locked.headers["retry-after"]) > 0
    # The notice is the same whether or not the account exists.
    assert answers["siti.qa"].json()["detail"] == answers["nobody.here"].json()["detail"]
    # Other people are not locked out by someone guessing at one name.
    assert identity.sign_in("root", ADMIN_PASSWORD).status_code == 200


def test_a_disabled_person_cannot_sign_in(identity: Identity):
    identity.add_person("budi.planner", "planner", "a planning pass phrase")
    assert identity.ceper("users", "disable", "budi.planner").returncode == 0
    response = identity.sign_in("budi.planner", "a planning pass phrase")
    assert response.status_code == 401


# --- the command line and the administration API ----------------------------------------------------


def test_the_command_line_refuses_bad_input_with_a_plain_message(identity: Identity):
    cases = [
        (("clients", "add", "kai-x", "--role", "buyer"), "role buyer needs a tenant"),
        (("clients", "add", "kai-x", "--role", "root"), "unknown role 'root'"),
        (("clients", "add", "kai-x", "--role", "planner", "--tenant", "KAI"), "takes no tenant"),
        (("clients", "rotate", "no-such-client"), "no client no-such-client"),
        (("users", "reset-password", "no-such-person"), "no person no-such-person"),
    ]
    for args, message in cases:
        done = identity.ceper(*args, stdin="a long enough password\n")
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    short = identity.ceper("users", "add", "short.pw", "--role", "planner", stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    empty = identity.ceper("users", "add", "no.pw", "--role", "planner", stdin="")
    assert empty.returncode == 1 and "no password" in empty.stderr


def test_listings_and_the_audit_trail_never_show_secrets_or_hashes(identity: Identity):
    client = identity.add_client("inka-listed", "buyer", "INKA")
    identity.ceper("clients", "rotate", client["name"])
    identity.add_person("dewi.lab", "lab", "a laboratory pass phrase")
    headers = admin_headers(identity)
    listed = identity.ceper("clients", "list", "--json").stdout + identity.ceper("users", "list", "--json").stdout
    served = (
        httpx.get(f"{identity.url}/v1/clients", headers=headers).text
        + httpx.get(f"{identity.url}/v1/people", headers=headers).text
    )
    audit = httpx.get(f"{identity.url}/v1/audit", params={"entity": "client", "entity_id": client["client_id"]}, headers=headers)
    assert audit.status_code == 200
    actions = [entry["action"] for entry in audit.json()]
    assert actions == ["client.secret_rotated", "client.added"]
    assert audit.json()[0]["actor_subject"].startswith("cli:") and audit.json()[0]["before"]["rotated_at"] is None
    for text in (listed, served, audit.text):
        assert "inka-listed" in text or "dewi.lab" in text
        assert client["client_secret"] not in text and "argon2" not in text and "hash" not in text


def test_administration_needs_an_admin_token(identity: Identity):
    client = identity.add_client("kai-not-admin", "buyer", "KAI")
    assert httpx.get(f"{identity.url}/v1/clients").status_code == 401
    forbidden = httpx.get(
        f"{identity.url}/v1/clients", headers=bearer(identity.token(client["client_id"], client["client_secret"]))
    )
    assert forbidden.status_code == 403 and forbidden.headers["content-type"] == "application/problem+json"
    created = httpx.post(
        f"{identity.url}/v1/clients",
        json={"name": "inka-api", "role": "buyer", "tenant": "INKA"},
        headers=admin_headers(identity),
    )
    assert created.status_code == 201 and created.json()["client_secret"] and created.headers["cache-control"] == "no-store"
    assert identity.token(created.json()["client_id"], created.json()["client_secret"])
    audit = httpx.get(f"{identity.url}/v1/audit", params={"entity": "client"}, headers=admin_headers(identity)).json()
    added = next(e for e in audit if e["entity_id"] == created.json()["client_id"])
    assert added["actor_subject"] == "root" and added["actor_role"] == "admin" and added["request_id"]
