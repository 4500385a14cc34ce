"""Keycloak takes over by configuration alone: a real Keycloak (the realm in deploy/keycloak/) issues client
credentials tokens; shared/auth.py, and a real service process configured only by settings, accept them with
the roles and the buyer code mapped from Keycloak's claims, and refuse a token for another audience."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ceper.keycloak import LocalKeycloak
from shared.auth import InvalidToken, TokenVerifier
from shared.roles import Role
from shared.settings import Settings
from tests.fixtures.tokens import TokenMint
from tests.integration.identity_support import bearer, protected_process

REALM = "ceper"
# How the realm lays out its claims: realm roles under realm_access.roles, the buyer in a nested custom claim.
CLAIM_MAPPING = {
    "auth_roles_claim": "realm_access.roles",
    "auth_buyer_claim": "ceper.buyer_code",
    "auth_audience": "ceper-supply",
}
KAI = ("kai-procurement", "kai-keycloak-test-secret")
# Keycloak's first start in dev mode builds itself (half a minute on a quiet machine, minutes on a busy one).
pytestmark = pytest.mark.timeout(900)
ARCHIVE = ("archive-reader", "archive-keycloak-test-secret")


def discovery(keycloak: LocalKeycloak) -> dict[str, Any]:
    return dict(httpx.get(f"{keycloak.realm_url(REALM)}/.well-known/openid-configuration", timeout=30).json())


def keycloak_token(keycloak: LocalKeycloak, client: tuple[str, str]) -> str:
    response = httpx.post(
        discovery(keycloak)["token_endpoint"], data={"grant_type": "client_credentials"}, auth=client, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def keycloak_settings(keycloak: LocalKeycloak) -> dict[str, str]:
    document = discovery(keycloak)
    return {"auth_issuer": document["issuer"], "auth_jwks_url": document["jwks_uri"], **CLAIM_MAPPING}


def test_shared_auth_maps_a_keycloak_token_by_settings(keycloak: LocalKeycloak):
    verifier = TokenVerifier.from_settings(Settings(**keycloak_settings(keycloak)))  # type: ignore[arg-type]
    principal = asyncio.run(verifier.verify(keycloak_token(keycloak, KAI)))
    assert principal.roles == {Role.BUYER} and principal.buyer_code == "KAI" and principal.client_id == "kai-procurement"
    assert principal.claims["iss"] == keycloak.realm_url(REALM)
    with pytest.raises(InvalidToken, match="another audience"):
        asyncio.run(verifier.verify(keycloak_token(keycloak, ARCHIVE)))


def test_the_default_mapping_grants_a_keycloak_token_nothing(keycloak: LocalKeycloak):
    settings = {k: v for k, v in keycloak_settings(keycloak).items() if k not in ("auth_roles_claim", "auth_buyer_claim")}
    principal = asyncio.run(TokenVerifier.from_settings(Settings(**settings)).verify(keycloak_token(keycloak, KAI)))  # type: ignore[arg-type]
    assert principal.roles == frozenset()  # the mapping is what makes Keycloak's roles ours


def test_a_service_configured_only_by_settings_accepts_keycloak_tokens(keycloak: LocalKeycloak):
    settings = keycloak_settings(keycloak)
    with protected_process(settings.pop("auth_issuer"), settings.pop("auth_jwks_url"), **settings) as service:
        kai = httpx.get(f"{service}/whoami", headers=bearer(keycloak_token(keycloak, KAI)))
        assert kai.status_code == 200, kai.text
        assert (
            kai.json()["roles"] == ["buyer"]
            and kai.json()["buyer_code"] == "KAI"
            and kai.json()["client_id"] == "kai-procurement"
        )
        assert httpx.get(f"{service}/plans", headers=bearer(keycloak_token(keycloak, KAI))).status_code == 403

        archive = httpx.get(f"{service}/whoami", headers=bearer(keycloak_token(keycloak, ARCHIVE)))
        assert archive.status_code == 401 and archive.json()["detail"] == "the token is for another audience"
        # A token naming Keycloak as issuer but signed with a key Keycloak does not publish.
        forged = TokenMint(issuer=keycloak.realm_url(REALM)).token(roles=["admin"])
        assert httpx.get(f"{service}/whoami", headers=bearer(forged)).status_code == 401
