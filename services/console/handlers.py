"""The console's use cases: reading the three services' APIs for people."""

from __future__ import annotations

import asyncio

import httpx

from shared.settings import Settings


async def service_health(settings: Settings, client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    """Readiness of each service as it reports it, or why it could not be asked."""
    targets = {"orders": settings.orders_url, "capacity": settings.capacity_url, "quality": settings.quality_url}

    async def ask(name: str, base: str) -> tuple[str, dict[str, object]]:
        try:
            response = await client.get(f"{base}/readyz", timeout=2.0)
            return name, {"url": base, **response.json()}
        except (httpx.HTTPError, ValueError) as exc:
            return name, {"url": base, "status": "unreachable", "checks": {"http": f"{exc.__class__.__name__}"}}

    results = await asyncio.gather(*(ask(name, base) for name, base in targets.items()))
    return dict(results)
