"""Wires the identity service: `uvicorn --factory services.identity.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.auth import TokenVerifier, VerifyingKey, import_jwks, install_verifier
from shared.clock import Clock
from shared.service import ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers, store


class OwnKeys:
    """Identity verifies the tokens of its own admin routes against its own published keys, read from its
    database, instead of fetching its JWKS over HTTP from itself."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    async def key(self, kid: str) -> VerifyingKey | None:
        assert self.runtime.sessions is not None
        return import_jwks(await handlers.jwks(self.runtime.sessions, self.runtime.settings)).get(kid)


async def prepare_signing(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    settings = runtime.settings
    keyring = handlers.Keyring(settings)
    runtime.state["keyring"] = keyring
    runtime.state["throttle"] = handlers.SignInThrottle(settings)
    await handlers.ensure_signing_key(runtime.sessions, keyring)
    install_verifier(
        runtime.state["app"],
        TokenVerifier(
            OwnKeys(runtime),
            issuer=settings.identity_issuer_url(),
            audience=settings.identity_audience,
            algorithms=["ES256"],
            leeway_s=settings.auth_leeway_s,
        ),
    )


SPEC = ServiceSpec(
    name="identity",
    title="Ceper Supply — identity",
    description=(
        "OAuth2 authorization server of the platform: client credentials for buyers' and laboratories' systems, "
        "sign-in for people, short-lived ES256 access tokens, JWKS and discovery."
    ),
    routers=[api.router, api.admin],
    metadata=store.metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    on_start=[prepare_signing],
    uses_broker=False,
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    app = create_service_app(SPEC, settings, clock)
    app.state.runtime.state["app"] = app
    return app
