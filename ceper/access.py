"""Access tokens for the command line's own calls to the services (`ceper seed`, `ceper chaos`, the benchmarks).

A person signs in at the identity service (`/v1/sessions`) and the token rides on every request; a new one is
fetched when the services answer 401 (it expired), never more than once per request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

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
