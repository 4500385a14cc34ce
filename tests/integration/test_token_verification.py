"""A service configured by settings alone verifies identity's tokens (real processes): the matrix of bad tokens,
an unknown key id (refresh, then refuse, without hammering the issuer), and a signing-key rotation during which
tokens of the old key stay valid until they expire."""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.fixtures.tokens import TokenMint
from tests.integration.identity_support import Identity, bearer, free_url, identity_process, protected_process

MIN_REFRESH_S = 8.0


@pytest.fixture(scope="module")
def signing_key() -> Iterator[tuple[ECKey, Path]]:
    """The key identity signs with, read from a file: the test holds it too, so it can forge claims the
    signature alone would vouch for."""
    key = ECKey.generate_key("P-256", private=True)
    folder = Path(tempfile.mkdtemp(prefix="ceper-test-key-"))
    (folder / "signing-key.pem").write_bytes(key.as_pem(private=True))
    yield key, folder / "signing-key.pem"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def identity(signing_key: tuple[ECKey, Path]) -> Iterator[Identity]:
    with identity_process(identity_signing_key_file=str(signing_key[1])) as running:
        yield running


@pytest.fixture(scope="module")
def service(identity: Identity) -> Iterator[str]:
    with protected_process(
        identity.url, f"{identity.url}/.well-known/jwks.json", auth_jwks_min_refresh_s=str(MIN_REFRESH_S)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def kai(identity: Identity) -> dict[str, str]:
    return identity.add_client("kai-procurement", "buyer", "KAI")


@pytest.fixture(scope="module")
def forger(identity: Identity, signing_key: tuple[ECKey, Path]) -> TokenMint:
    mint = TokenMint(issuer=identity.url, audience="ceper-supply")
    mint.key, mint.kid = signing_key[0], signing_key[0].thumbprint()
    return mint


def test_identity_publishes_the_key_from_its_file(identity: Identity, signing_key: tuple[ECKey, Path]):
    kids = [k["kid"] for k in httpx.get(f"{identity.url}/.well-known/jwks.json").json()["keys"]]
    assert kids == [signing_key[0].thumbprint()]
    rotation = identity.ceper("keys", "rotate")
    assert rotation.returncode == 1 and "CEPER_IDENTITY_SIGNING_KEY_FILE" in rotation.stderr


def test_a_token_from_identity_is_accepted_with_its_roles_and_tenant(identity: Identity, service: str, kai: dict[str, str]):
    response = httpx.get(f"{service}/whoami", headers=bearer(identity.token(kai["client_id"], kai["client_secret"])))
    assert response.status_code == 200
    assert response.json() == {
        "subject": kai["client_id"],
        "roles": ["buyer"],
        "buyer_code": "KAI",
        "foundry_code": None,
        "client_id": kai["client_id"],
    }


def test_a_role_the_route_does_not_admit_is_forbidden(identity: Identity, service: str, kai: dict[str, str]):
    response = httpx.get(f"{service}/plans", headers=bearer(identity.token(kai["client_id"], kai["client_secret"])))
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="ceper", error="insufficient_scope"')


def _tampered(token: str) -> str:
    """The token with its claims rewritten to grant admin, keeping the original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "the token has expired"),
        ("audience", "the token is for another audience"),
        ("issuer", "the token is from another issuer"),
        ("not-yet", "the token is not valid yet"),
        ("alg-none", "tokens signed with 'none' are not accepted"),
        ("tampered", "the token's signature does not verify"),
        ("none", "a bearer token is required"),
    ],
)
def test_bad_tokens_are_refused_with_401(
    identity: Identity, service: str, kai: dict[str, str], forger: TokenMint, case: str, reason: str
):
    tokens = {
        "expired": lambda: forger.token(roles=["buyer"], buyer_code="KAI", issued_at=time.time() - 3600, ttl_s=600),
        "audience": lambda: forger.token(roles=["buyer"], buyer_code="KAI", aud="document-archive"),
        "issuer": lambda: forger.token(roles=["buyer"], buyer_code="KAI", iss="https://keycloak.example/realms/other"),
        "not-yet": lambda: forger.token(roles=["buyer"], buyer_code="KAI", nbf=int(time.time()) + 3600),
        "alg-none": lambda: forger.unsigned(roles=["admin"]),
        "tampered": lambda: _tampered(identity.token(kai["client_id"], kai["client_secret"])),
        "none": lambda: None,
    }
    token = tokens[case]()
    response = httpx.get(f"{service}/whoami", headers=bearer(token) if token else {})
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == reason
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer realm="ceper"' if case == "none" else 'error="invalid_token"' in challenge


def test_a_forged_token_with_good_claims_passes_only_because_the_key_is_the_issuers(service: str, forger: TokenMint):
    # The control for the matrix above: the same forger with nothing wrong is accepted.
    response = httpx.get(f"{service}/whoami", headers=forger.headers(roles=["planner"], subject="siti"))
    assert response.status_code == 200 and response.json()["roles"] == ["planner"]


def test_an_unknown_kid_refreshes_the_keys_once_then_is_refused_and_a_flood_does_not_hammer_identity(
    identity: Identity, service: str
):
    stranger = ECKey.generate_key("P-256", private=True)
    mint = TokenMint(issuer=identity.url)
    httpx.get(f"{service}/whoami", headers=mint.headers(key=stranger))  # whatever the cache held, it is now fresh
    time.sleep(MIN_REFRESH_S + 0.5)
    before = identity.jwks_fetches()
    response = httpx.get(f"{service}/whoami", headers=mint.headers(key=stranger))
    assert (
        response.status_code == 401 and response.json()["detail"] == "the token is signed with a key the issuer does not publish"
    )
    assert identity.jwks_fetches() == before + 1  # it looked again: a rotation would have been found

    started = time.monotonic()
    for _ in range(15):
        assert (
            httpx.get(f"{service}/whoami", headers=mint.headers(key=ECKey.generate_key("P-256", private=True))).status_code == 401
        )
    elapsed = time.monotonic() - started
    # At most one more look per interval, however many made-up key ids arrive.
    assert identity.jwks_fetches() - (before + 1) <= math.floor(elapsed / MIN_REFRESH_S)


def test_keys_that_cannot_be_fetched_make_the_service_unavailable_not_the_token_bad(forger: TokenMint):
    with protected_process(forger.issuer, f"{free_url()}/.well-known/jwks.json") as service:
        response = httpx.get(f"{service}/whoami", headers=forger.headers(roles=["planner"]))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_after_a_key_rotation_tokens_of_both_keys_are_accepted_until_they_expire():
    with (
        identity_process() as identity,
        protected_process(identity.url, f"{identity.url}/.well-known/jwks.json", auth_jwks_min_refresh_s="1") as service,
    ):
        inka = identity.add_client("inka-procurement", "buyer", "INKA")
        old = identity.token(inka["client_id"], inka["client_secret"])
        assert httpx.get(f"{service}/whoami", headers=bearer(old)).status_code == 200
        old_kids = {k["kid"] for k in httpx.get(f"{identity.url}/.well-known/jwks.json").json()["keys"]}

        rotation = identity.ceper("keys", "rotate")
        assert rotation.returncode == 0, rotation.stderr
        kids = {k["kid"] for k in httpx.get(f"{identity.url}/.well-known/jwks.json").json()["keys"]}
        assert old_kids < kids and len(kids) == 2  # the new key, and the old one until its tokens expire

        time.sleep(1.2)  # past the verifier's minimum refresh interval
        new = identity.token(inka["client_id"], inka["client_secret"])
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "==="))["kid"] in kids - old_kids
        assert httpx.get(f"{service}/whoami", headers=bearer(new)).status_code == 200  # found by refreshing
        assert httpx.get(f"{service}/whoami", headers=bearer(old)).status_code == 200  # still valid
