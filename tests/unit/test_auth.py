"""Token verification and route rules (shared/auth.py): claim mapping, the verification checks, the JWKS cache,
401/403 answers as problem+json, and the OpenAPI security schemes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc.jwk import ECKey, RSAKey

from shared.auth import (
    ClaimMapping,
    InvalidToken,
    JwksKeys,
    KeysUnavailable,
    Principal,
    RouteRule,
    import_jwks,
    install_verifier,
    public,
    require,
    rule_of,
)
from shared.http import install_problem_handlers
from shared.roles import Role
from shared.settings import Settings
from tests.fixtures.tokens import TokenMint, b64

# --- claim mapping ----------------------------------------------------------------------------------


def test_the_default_mapping_reads_identitys_own_claims():
    principal = ClaimMapping().principal({"sub": "kai-1", "roles": ["buyer"], "buyer_code": "KAI", "client_id": "kai-1"})
    assert principal == Principal("kai-1", frozenset({Role.BUYER}), buyer_code="KAI", client_id="kai-1")


def test_a_keycloak_layout_is_mapped_by_configuration_alone():
    claims = {
        "sub": "94b5af15",
        "azp": "kai-procurement",
        "realm_access": {"roles": ["default-roles-ceper", "offline_access", "buyer"]},
        "ceper": {"buyer_code": "KAI"},
    }
    mapping = ClaimMapping(roles="realm_access.roles", buyer_code="ceper.buyer_code")
    principal = mapping.principal(claims)
    assert principal.roles == {Role.BUYER} and principal.buyer_code == "KAI" and principal.client_id == "kai-procurement"
    # The same token read with the default mapping grants nothing.
    assert ClaimMapping().principal(claims).roles == frozenset()


def test_mapping_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CEPER_AUTH_ROLES_CLAIM", "realm_access.roles")
    monkeypatch.setenv("CEPER_AUTH_BUYER_CLAIM", "ceper.buyer_code")
    mapping = ClaimMapping.from_settings(Settings())
    assert mapping == ClaimMapping(roles="realm_access.roles", buyer_code="ceper.buyer_code")


def test_a_tenant_role_without_its_tenant_is_not_granted():
    principal = ClaimMapping().principal({"sub": "x", "roles": ["buyer", "foundry", "lab"], "foundry_code": "IKM-001"})
    assert principal.roles == {Role.FOUNDRY, Role.LAB}
    assert principal.foundry_code == "IKM-001" and principal.buyer_code is None


def test_roles_may_be_a_space_separated_string_and_unknown_roles_are_ignored():
    principal = ClaimMapping().principal({"sub": "x", "roles": "planner superuser qa_officer"})
    assert principal.roles == {Role.PLANNER, Role.QA_OFFICER}


def test_a_token_without_a_subject_is_invalid():
    with pytest.raises(InvalidToken, match="no subject"):
        ClaimMapping().principal({"roles": ["admin"]})


def test_a_claim_with_a_dot_in_its_own_name_wins_over_nesting():
    principal = ClaimMapping(buyer_code="https://ceper.id/buyer").principal(
        {"sub": "x", "roles": ["buyer"], "https://ceper.id/buyer": "INKA"}
    )
    assert principal.buyer_code == "INKA"


def test_tenant_checks_let_staff_through_and_keep_tenants_to_their_own():
    kai = Principal("k", frozenset({Role.BUYER}), buyer_code="KAI")
    planner = Principal("p", frozenset({Role.PLANNER}))
    foundry = Principal("f", frozenset({Role.FOUNDRY}), foundry_code="IKM-001")
    assert kai.acts_for_buyer("KAI") and not kai.acts_for_buyer("INKA")
    assert planner.acts_for_buyer("INKA") and planner.acts_for_foundry("IKM-002")
    assert foundry.acts_for_foundry("IKM-001") and not foundry.acts_for_foundry("IKM-002") and not foundry.acts_for_buyer("KAI")


# --- verification -----------------------------------------------------------------------------------


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


async def test_a_good_token_gives_its_principal(mint: TokenMint):
    principal = await mint.verifier().verify(mint.token(roles=["buyer"], buyer_code="KAI", subject="kai"))
    assert principal.subject == "kai" and principal.roles == {Role.BUYER} and principal.buyer_code == "KAI"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda m: m.token(ttl_s=-120), "expired"),
        (lambda m: m.token(aud="another-api"), "another audience"),
        (lambda m: m.token(iss="https://evil.example"), "another issuer"),
        (lambda m: m.token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda m: m.token(iat=int(time.time()) + 600), "issued in the future"),
        (lambda m: m.token(exp=None), "lacks the claims exp"),
        (lambda m: m.unsigned(), "'none' are not accepted"),
        (lambda m: m.token()[:-6] + ("AAAAAA" if not m.token().endswith("AAAAAA") else "BBBBBB"), "signature does not verify"),
        (lambda m: m.token(key=ECKey.generate_key("P-256", private=True)), "key the issuer does not publish"),
        (lambda m: m.token(kid=m.kid, key=ECKey.generate_key("P-256", private=True)), "signature does not verify"),
        (lambda m: "not.a.jwt", "not a signed JWT"),
        (lambda m: "", "not a signed JWT"),
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "nbf",
        "iat",
        "no-exp",
        "alg-none",
        "tampered",
        "unknown-kid",
        "wrong-key",
        "garbage",
        "empty",
    ],
)
async def test_a_bad_token_is_refused(mint: TokenMint, make: Any, reason: str):
    with pytest.raises(InvalidToken, match=reason):
        await mint.verifier().verify(make(mint))


async def test_expiry_allows_the_configured_clock_leeway(mint: TokenMint):
    token = mint.token(ttl_s=-10)
    assert (await mint.verifier(leeway_s=30).verify(token)).subject == "test-subject"
    with pytest.raises(InvalidToken, match="expired"):
        await mint.verifier(leeway_s=0).verify(token)


async def test_a_symmetric_token_keyed_with_the_public_key_is_refused(mint: TokenMint):
    # The classic confusion attack: HS256 "signed" with the issuer's public key as the HMAC secret.
    # joserfc itself refuses to make such a key, so the attacker's token is put together by hand.
    header = b64(json.dumps({"alg": "HS256", "kid": mint.kid}).encode())
    payload = b64(json.dumps(mint.claims()).encode())
    mac = hmac.new(mint.key.as_pem(private=False), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64(mac)}"
    with pytest.raises(InvalidToken, match="'HS256' are not accepted"):
        await mint.verifier(algorithms=["ES256", "RS256", "HS256"]).verify(forged)


async def test_only_allowed_algorithms_verify(mint: TokenMint):
    rsa = RSAKey.generate_key(2048, private=True)
    jwks = {"keys": [*mint.jwks()["keys"], {**rsa.as_dict(private=False), "kid": "rsa-1", "use": "sig"}]}
    from shared.auth import StaticKeys, TokenVerifier

    verifier = TokenVerifier(StaticKeys(jwks), issuer=mint.issuer, audience=mint.audience, algorithms=["ES256"])
    with pytest.raises(InvalidToken, match="'RS256' are not accepted"):
        await verifier.verify(mint.token(key=rsa, kid="rsa-1", alg="RS256"))
    assert (await verifier.verify(mint.token())).subject == "test-subject"


def test_settings_refuse_symmetric_and_none_algorithms():
    for refused in (["HS256"], ["ES256", "none"], ["HS512"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            Settings(auth_algorithms=refused)


def test_import_jwks_skips_encryption_private_and_broken_keys(mint: TokenMint):
    private = {**mint.key.as_dict(private=True), "kid": "private"}
    document = {
        "keys": [
            *mint.jwks()["keys"],
            {**mint.jwks()["keys"][0], "kid": "enc", "use": "enc"},
            private,
            {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "nope"},
            {"kty": "EC", "crv": "P-256"},
        ]
    }
    assert set(import_jwks(document)) == {mint.kid}


# --- the JWKS cache ---------------------------------------------------------------------------------


class FakeIssuer:
    def __init__(self, mint: TokenMint) -> None:
        self.documents = [mint.jwks()]
        self.fetches = 0
        self.down = False

    async def fetch(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("refused")
        return self.documents[-1]


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_unknown_kid_refreshes_once_then_is_refused_until_the_minimum_interval_passed(mint: TokenMint):
    issuer, ticks = FakeIssuer(mint), Ticks()
    keys = JwksKeys("http://issuer/jwks", cache_s=300, min_refresh_s=10, fetch=issuer.fetch, monotonic=ticks)
    assert await keys.key(mint.kid) is not None and issuer.fetches == 1
    ticks.now += 11
    assert await keys.key("made-up-1") is None and issuer.fetches == 2  # refreshed: perhaps a rotation
    for n in range(50):  # a flood of made-up kids within the interval does not reach the issuer
        assert await keys.key(f"made-up-{n}") is None
    assert issuer.fetches == 2
    assert await keys.key(mint.kid) is not None and issuer.fetches == 2


async def test_a_rotated_key_is_found_by_refreshing_on_its_kid(mint: TokenMint):
    issuer, ticks = FakeIssuer(mint), Ticks()
    keys = JwksKeys("http://issuer/jwks", cache_s=300, min_refresh_s=10, fetch=issuer.fetch, monotonic=ticks)
    await keys.key(mint.kid)
    rotated = TokenMint()
    issuer.documents.append({"keys": [*mint.jwks()["keys"], *rotated.jwks()["keys"]]})
    ticks.now += 10
    assert await keys.key(rotated.kid) is not None and issuer.fetches == 2


async def test_keys_expire_from_the_cache_and_a_failed_refresh_keeps_the_old_ones(mint: TokenMint):
    issuer, ticks = FakeIssuer(mint), Ticks()
    keys = JwksKeys("http://issuer/jwks", cache_s=300, min_refresh_s=10, fetch=issuer.fetch, monotonic=ticks)
    await keys.key(mint.kid)
    ticks.now += 301
    issuer.down = True
    assert await keys.key(mint.kid) is not None and issuer.fetches == 2


async def test_without_any_keys_an_unreachable_issuer_is_unavailable_not_a_bad_token(mint: TokenMint):
    issuer = FakeIssuer(mint)
    issuer.down = True
    keys = JwksKeys("http://issuer/jwks", fetch=issuer.fetch)
    with pytest.raises(KeysUnavailable):
        await keys.key(mint.kid)


# --- route rules ------------------------------------------------------------------------------------


def protected_app(mint: TokenMint) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_verifier(app, mint.verifier())

    @app.get("/orders")
    async def orders(caller: Principal = Depends(require(Role.PLANNER, Role.BUYER))) -> dict[str, Any]:  # noqa: B008  # FastAPI's idiom
        return {"subject": caller.subject, "buyer": caller.buyer_code}

    @app.get("/status", dependencies=[Depends(public())])
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/undeclared")
    async def undeclared() -> None:
        return None

    return app


async def call(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get(path, headers=headers or {})


async def test_no_token_is_a_401_problem_with_a_bearer_challenge(mint: TokenMint):
    response = await call(protected_app(mint), "/orders")
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="ceper"'


async def test_a_bad_token_is_a_401_naming_invalid_token(mint: TokenMint):
    response = await call(protected_app(mint), "/orders", {"authorization": f"Bearer {mint.token(ttl_s=-600)}"})
    assert response.status_code == 401 and response.json()["detail"] == "the token has expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_role_the_rule_does_not_name_is_a_403(mint: TokenMint):
    response = await call(protected_app(mint), "/orders", mint.headers(roles=["lab"]))
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_a_role_the_rule_names_passes_with_its_principal(mint: TokenMint):
    response = await call(protected_app(mint), "/orders", mint.headers(roles=["buyer"], buyer_code="KAI", subject="kai"))
    assert response.status_code == 200 and response.json() == {"subject": "kai", "buyer": "KAI"}


async def test_public_routes_need_no_token(mint: TokenMint):
    assert (await call(protected_app(mint), "/status")).status_code == 200


def test_every_route_tells_its_rule(mint: TokenMint):
    rules = {route.path: rule_of(route) for route in protected_app(mint).routes if hasattr(route, "dependant")}
    assert rules["/orders"] == RouteRule(frozenset({Role.PLANNER, Role.BUYER}))
    assert rules["/status"] is not None and rules["/status"].public
    assert rules["/undeclared"] is None


def test_require_needs_a_role():
    with pytest.raises(ValueError, match="at least one role"):
        require()
    with pytest.raises(ValueError):
        require("superuser")


def test_openapi_documents_bearer_and_client_credentials(mint: TokenMint, monkeypatch):
    schema = protected_app(mint).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A JWT access token"}
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"].endswith("/oauth/token")
    assert {"bearer": []} in schema["paths"]["/orders"]["get"]["security"]
    assert "security" not in schema["paths"]["/status"]["get"]


def test_a_secret_setting_may_come_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse battery staple\n")
    monkeypatch.setenv("CEPER_IDENTITY_KEY_PASSPHRASE_FILE", str(secret))
    settings = Settings()
    assert settings.identity_key_passphrase is not None
    assert settings.identity_key_passphrase.get_secret_value() == "correct horse battery staple"
    assert "correct horse" not in repr(settings)


# --- verified tokens kept ---------------------------------------------------------------------------


class _Rotating:
    """A key source whose published keys can be replaced, as a JWKS after a rotation."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.keys = import_jwks(jwks)

    async def key(self, kid: str) -> Any:
        return self.keys.get(kid)


async def test_a_token_verified_before_is_still_refused_once_it_expires(mint: TokenMint, monkeypatch):
    import shared.auth
    from shared.auth import TokenVerifier

    checked: list[str] = []
    decode = shared.auth.jwt.decode
    monkeypatch.setattr(shared.auth.jwt, "decode", lambda token, *a, **k: checked.append(token) or decode(token, *a, **k))

    clock = [time.time()]
    verifier = TokenVerifier(_Rotating(mint.jwks()), issuer=mint.issuer, audience=mint.audience, leeway_s=0, now=lambda: clock[0])
    token = mint.token(ttl_s=60)
    assert (await verifier.verify(token)).subject == "test-subject"
    assert (await verifier.verify(token)).subject == "test-subject"
    assert checked == [token]  # kept: its signature was checked once
    clock[0] += 120
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_a_token_verified_before_is_refused_once_its_key_is_withdrawn(mint: TokenMint):
    from shared.auth import TokenVerifier

    keys = _Rotating(mint.jwks())
    verifier = TokenVerifier(keys, issuer=mint.issuer, audience=mint.audience)
    token = mint.token()
    assert (await verifier.verify(token)).subject == "test-subject"
    keys.keys = {}  # the issuer no longer publishes the key
    with pytest.raises(InvalidToken, match="does not publish"):
        await verifier.verify(token)
    # Another key published under the same kid does not vouch for what the old one signed.
    other = ECKey.generate_key("P-256", private=True)
    keys.keys = import_jwks({"keys": [{**other.as_dict(private=False), "kid": mint.kid, "use": "sig", "alg": "ES256"}]})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        await verifier.verify(token)


async def test_a_forged_copy_of_a_kept_token_is_not_taken_for_it(mint: TokenMint):
    verifier = mint.verifier()
    token = mint.token()
    await verifier.verify(token)
    header, payload, signature = token.split(".")
    forged_claims = {**json.loads(_unb64(payload)), "roles": ["admin"]}
    forged = f"{header}.{b64(json.dumps(forged_claims).encode())}.{signature}"
    with pytest.raises(InvalidToken, match="signature does not verify"):
        await verifier.verify(forged)


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
