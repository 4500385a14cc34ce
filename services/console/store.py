"""The console stores nothing authoritative: its data comes from the orders, capacity and quality APIs, read
through one shared HTTP client with timeouts and the caller's own token, and its live feed sits in memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.settings import Settings

SERVICES = ("orders", "capacity", "quality")
TIMEOUT = httpx.Timeout(10.0, connect=2.0)
LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=20)


@dataclass
class UpstreamProblem(Exception):
    """A service refused or could not answer: its problem+json, kept whole so pages can show it by field."""

    service: str
    status: int
    title: str
    detail: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: int | None = None  # seconds, when the service said when to try again

    def __str__(self) -> str:
        return f"{self.service} {self.status}: {self.detail or self.title}"

    @property
    def unavailable(self) -> bool:
        return self.status in (502, 503, 504)


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, headers={"accept": "application/json"})


class Upstream:
    """The three services, as one person sees them: every call carries that person's `Authorization` header."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, authorization: str | None = None) -> None:
        self._bases = {"orders": settings.orders_url, "capacity": settings.capacity_url, "quality": settings.quality_url}
        self._client = client
        self._authorization = authorization

    def base(self, service: str) -> str:
        return self._bases[service].rstrip("/")

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {}
        if self._authorization:
            headers["authorization"] = self._authorization
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return headers

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        return await self._call(service, "GET", path, params=clean)

    async def get_or_none(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """The resource, or None when the service says there is none (404)."""
        try:
            return await self.get(service, path, params)
        except UpstreamProblem as problem:
            if problem.status == 404:
                return None
            raise

    async def send(
        self,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        return await self._call(service, method, path, json=body, idempotency_key=idempotency_key, params=params)

    async def all_pages(self, service: str, path: str, params: dict[str, Any] | None = None, page: int = 500) -> list[Any]:
        """Every item of a paged list (`items`, `total`), fetched page by page."""
        items: list[Any] = []
        offset = 0
        while True:
            found = await self.get(service, path, {**(params or {}), "limit": page, "offset": offset})
            items += found["items"]
            offset += len(found["items"])
            if not found["items"] or offset >= found["total"]:
                return items

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        try:
            response = await self._client.request(
                method, f"{self.base(service)}{path}", params=params, json=json, headers=self._headers(idempotency_key)
            )
        except httpx.TimeoutException as exc:
            raise UpstreamProblem(
                service, 504, "Timeout", f"{service} did not answer in time ({exc.__class__.__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamProblem(service, 503, "Unavailable", f"{service} cannot be reached ({exc.__class__.__name__})") from exc
        if response.status_code >= 400:
            raise _problem(service, response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def gather(self, *calls: Any) -> list[Any]:
        return list(await asyncio.gather(*calls))


def _problem(service: str, response: httpx.Response) -> UpstreamProblem:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    retry_after = response.headers.get("retry-after", "")
    return UpstreamProblem(
        service=service,
        status=response.status_code,
        title=str(body.get("title") or response.reason_phrase),
        detail=body.get("detail"),
        errors=[e for e in body.get("errors") or [] if isinstance(e, dict)],
        retry_after=int(retry_after) if retry_after.isdigit() else None,
    )


async def _identity(client: httpx.AsyncClient, settings: Settings, path: str, body: dict[str, str], **headers: str) -> Any:
    try:
        response = await client.post(f"{settings.identity_url.rstrip('/')}{path}", json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise UpstreamProblem("identity", 504, "Timeout", f"identity did not answer in time ({exc.__class__.__name__})") from exc
    except httpx.HTTPError as exc:
        raise UpstreamProblem("identity", 503, "Unavailable", f"identity cannot be reached ({exc.__class__.__name__})") from exc
    if response.status_code >= 400:
        raise _problem("identity", response)
    return response.json() if response.content else None


def _tokens(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise UpstreamProblem("identity", 502, "Bad gateway", "identity answered without a token")
    return answer


async def sign_in(client: httpx.AsyncClient, settings: Settings, username: str, password: str, address: str) -> dict[str, Any]:
    """The identity service's answer to a person's sign-in: their access token, refresh token, roles and tenant.

    The person's own address is forwarded, so identity's per-address limit counts each person, not the console."""
    answer = await _identity(
        client, settings, "/v1/sessions", {"username": username, "password": password}, **{"x-forwarded-for": address}
    )
    return _tokens(answer)


async def renew(client: httpx.AsyncClient, settings: Settings, refresh_token: str) -> dict[str, Any]:
    """A new access token and refresh token for a sign-in (the refresh token given is spent)."""
    return _tokens(await _identity(client, settings, "/v1/sessions/renew", {"refresh_token": refresh_token}))


async def sign_out(client: httpx.AsyncClient, settings: Settings, refresh_token: str) -> None:
    """End the sign-in at identity, so its refresh token renews nothing any more."""
    await _identity(client, settings, "/v1/sessions/end", {"refresh_token": refresh_token})


def _as(authorization: str | None) -> dict[str, str]:
    return {"authorization": authorization} if authorization else {}


async def metrics_text(client: httpx.AsyncClient, base: str, authorization: str | None = None) -> str | None:
    """A service's Prometheus exposition, or None when it cannot be read (read as the person, should it need a role)."""
    try:
        response = await client.get(f"{base.rstrip('/')}/metrics", timeout=3.0, headers=_as(authorization))
        return response.text if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def readiness(client: httpx.AsyncClient, name: str, base: str, authorization: str | None = None) -> dict[str, Any]:
    try:
        response = await client.get(f"{base.rstrip('/')}/readyz", timeout=2.0, headers=_as(authorization))
        return {"url": base, **response.json()}
    except (httpx.HTTPError, ValueError) as exc:
        return {"url": base, "status": "unreachable", "checks": {"http": exc.__class__.__name__}}
