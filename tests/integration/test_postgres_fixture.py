"""The `postgres_server` fixture runs a real PostgreSQL server that SQLAlchemy (asyncpg) can use."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.postgres


async def test_a_created_database_stores_and_returns_rows(postgres_server) -> None:
    url = postgres_server.create_database()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE foundry (code text PRIMARY KEY, weekly_capacity integer)"))
            await connection.execute(
                text("INSERT INTO foundry VALUES (:code, :capacity)"),
                [{"code": "BATUR-01", "capacity": 1200}, {"code": "BATUR-02", "capacity": 800}],
            )
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT code, weekly_capacity FROM foundry ORDER BY code"))).all()
            version = (await connection.execute(text("SHOW server_version_num"))).scalar_one()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("BATUR-01", 1200), ("BATUR-02", 800)]
    assert int(version) >= 130000  # DROP DATABASE … WITH (FORCE) needs 13+


async def test_databases_are_isolated(postgres_server) -> None:
    first = create_async_engine(postgres_server.create_database())
    second = create_async_engine(postgres_server.create_database())
    try:
        async with first.begin() as connection:
            await connection.execute(text("CREATE TABLE lot (code text PRIMARY KEY)"))
            await connection.execute(text("INSERT INTO lot VALUES ('LOT-1')"))
        async with second.begin() as connection:
            await connection.execute(text("CREATE TABLE lot (code text PRIMARY KEY)"))
            in_second = (await connection.execute(text("SELECT count(*) FROM lot"))).scalar_one()
            await connection.execute(text("CREATE TABLE only_here (id integer)"))
        async with first.connect() as connection:
            in_first = (await connection.execute(text("SELECT count(*) FROM lot"))).scalar_one()
            leaked = (await connection.execute(text("SELECT to_regclass('only_here')"))).scalar_one()
    finally:
        await first.dispose()
        await second.dispose()
    assert (in_first, in_second, leaked) == (1, 0, None)


async def test_server_is_configured_for_tests(postgres_server) -> None:
    engine = create_async_engine(postgres_server.create_database())
    try:
        async with engine.connect() as connection:
            settings = {
                name: (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("listen_addresses", "fsync", "synchronous_commit", "max_connections", "port")
            }
    finally:
        await engine.dispose()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "max_connections": "200",
        "port": str(postgres_server.port),
    }
    assert (postgres_server.host, postgres_server.user) == ("127.0.0.1", "postgres")


async def test_named_database_can_be_dropped_while_connected(postgres_server) -> None:
    url = postgres_server.create_database("fixture_drop_check")
    assert make_url(url).database == "fixture_drop_check"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        # The engine's pool still holds a connection; dropping must not wait for it.
        postgres_server.drop_database("fixture_drop_check")
    finally:
        await engine.dispose()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(
            host=postgres_server.host, port=postgres_server.port, user="postgres", database="fixture_drop_check"
        )
