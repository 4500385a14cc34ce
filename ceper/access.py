"""Access tokens for the command line's own calls to the services (`ceper seed`, `ceper chaos`, the benchmarks).

`SignedIn`: a person signs in at the identity service (`/v1/sessions`) and the token rides on every request; a new
one is fetched when the services answer 401 (it expired), never more than once per request.

`LocalIssuer`: for services started without an identity service (benchmarks, fault runs, tests), a throw-away ES256
key pair whose JWKS it serves on a loopback port; the services trust it by the `CEPER_AUTH_*` settings alone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

DEMO_ADMIN = "admin"  # made by `make dev` (services/identity/demo.py)


class SignedIn(httpx.Auth):
    """Bearer tokens of a person signed in at identity; usable by sync and async httpx clients."""

    def __init__(self, identity_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.url = f"{identity_url.rstrip('/')}/v1/sessions"
        self.credentials = {"username": username, "password": password}
        self.timeout = timeout
        self.token: str | None = None

    def _taken(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise RuntimeError(f"signing in as {self.credentials['username']} at {self.url} failed: {response.status_code}")
        self.token = str(response.json()["access_token"])
        return self.token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None:
            with httpx.Client(timeout=self.timeout) as client:
                self._taken(client.post(self.url, json=self.credentials))
        request.headers["authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            with httpx.Client(timeout=self.timeout) as client:
                request.headers["authorization"] = f"Bearer {self._taken(client.post(self.url, json=self.credentials))}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.token is None:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                self._taken(await client.post(self.url, json=self.credentials))
        request.headers["authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                request.headers["authorization"] = f"Bearer {self._taken(await client.post(self.url, json=self.credentials))}"
            yield request


def demo_admin(identity_url: str) -> SignedIn:
    """The demo admin of a `make dev` deployment, with the development-only password it prints."""
    from services.identity.demo import DEMO_PASSWORD

    return SignedIn(identity_url, DEMO_ADMIN, DEMO_PASSWORD)


class LocalIssuer:
    """Signs tokens like the identity service would, with a key pair only this process knows."""

    def __init__(self, issuer: str = "https://issuer.ceper.local", audience: str = "ceper-supply") -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = ECKey.generate_key("P-256", private=True)
        self.kid = self.key.thumbprint()
        self.jwks_requests = 0

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.key.as_dict(private=False), "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def claims(
        self,
        *,
        roles: Sequence[str] = ("planner",),
        subject: str = "test-subject",
        buyer_code: str | None = None,
        foundry_code: str | None = None,
        ttl_s: int = 600,
        issued_at: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(issued_at if issued_at is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            "roles": list(roles),
        }
        if buyer_code is not None:
            claims["buyer_code"] = buyer_code
        if foundry_code is not None:
            claims["foundry_code"] = foundry_code
        claims.update(extra)
        return claims

    def token(self, key: ECKey | RSAKey | None = None, kid: str | None = None, alg: str = "ES256", **claims: Any) -> str:
        """A signed token; `key`/`kid`/`alg` sign it otherwise (another key, an unknown kid, RS256)."""
        signer = key or self.key
        header = {"alg": alg, "kid": kid or (signer.thumbprint() if key is not None else self.kid), "typ": "at+jwt"}
        return jwt.encode(header, self.claims(**claims), signer, algorithms=[alg])

    def auth(self, **claims: Any) -> IssuerAuth:
        """An httpx auth that signs a fresh token with these claims for every request."""
        return IssuerAuth(self, claims)

    def env(self, jwks_url: str) -> dict[str, str]:
        """The environment that makes a service process trust this issuer."""
        return {"CEPER_AUTH_ISSUER": self.issuer, "CEPER_AUTH_AUDIENCE": self.audience, "CEPER_AUTH_JWKS_URL": jwks_url}

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serves the JWKS over HTTP on a free loopback port; yields its URL."""
        server = self._jwks_server()
        try:
            yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
        finally:
            server.shutdown()
            server.server_close()

    def serve_in_background(self) -> str:
        """Serves the JWKS until the process ends (a script's whole run); returns its URL."""
        return f"http://127.0.0.1:{self._jwks_server().server_port}/.well-known/jwks.json"

    def _jwks_server(self) -> ThreadingHTTPServer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.jwks_requests += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


class IssuerAuth(httpx.Auth):
    """Bearer tokens of a `LocalIssuer`, a fresh one per request; a token the caller sends itself wins."""

    def __init__(self, issuer: LocalIssuer, claims: dict[str, Any]) -> None:
        self.issuer = issuer
        self.claims = claims

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers:
            request.headers["authorization"] = f"Bearer {self.issuer.token(**self.claims)}"
        yield request

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.issuer.token(**self.claims)}"}
