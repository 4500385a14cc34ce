"""Unexpected errors answer problem+json that carries the request id; an unavailable database answers 503."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from shared.http import REQUEST_ID_HEADER, RequestContextMiddleware, install_problem_handlers


def app_that_fails() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service="test")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/database-down")
    async def database_down() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/database-refuses")
    async def database_refuses() -> None:
        # What asyncpg raises when the database takes no connection: a plain database error with its SQLSTATE.
        refusal = Exception('database "orders" is not currently accepting connections')
        refusal.sqlstate = "55000"  # type: ignore[attr-defined]  # set as asyncpg sets it on its errors
        raise sa.exc.DBAPIError("connect", {}, refusal)

    @app.get("/connection-cut")
    async def connection_cut() -> None:
        # A connection the server terminated, which the pool dropped as a disconnect.
        busy = Exception("cannot switch to state 11; another operation (2) is in progress")
        raise sa.exc.InternalError("SELECT 1", {}, busy, connection_invalidated=True)

    @app.get("/nul")
    async def nul() -> None:
        raise sa.exc.DataError("INSERT …", {}, ValueError("invalid byte sequence for encoding UTF8: 0x00"))

    return app


async def call(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_that_fails(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers={REQUEST_ID_HEADER: "req-42"})


async def test_an_unexpected_error_is_a_500_problem_with_the_request_id():
    response = await call("/bug")
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert response.headers[REQUEST_ID_HEADER] == "req-42" and response.json()["request_id"] == "req-42"
    assert "a bug" not in response.text  # internals stay in the log


async def test_an_unavailable_database_is_a_503_to_retry_later():
    response = await call("/database-down")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    refused = await call("/database-refuses")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    cut = await call("/connection-cut")
    assert cut.status_code == 503 and cut.headers["retry-after"] == "5"
    assert response.json()["request_id"] == "req-42" and response.json()["type"].endswith("/unavailable")


async def test_a_value_the_database_refuses_is_the_requests_fault():
    response = await call("/nul")
    assert response.status_code == 422 and response.json()["request_id"] == "req-42"
    assert "NUL" in response.json()["detail"]
