"""PostgreSQL's pool: a connection that sat idle is checked before use, so one the server cut meanwhile is
replaced without the request seeing it; one just used is handed out as it is."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from shared.db import connection_cut, create_engine


async def _backend_pid(engine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()


async def test_an_idle_connection_the_server_cut_is_replaced_before_use(postgres_server):
    url = postgres_server.create_database()
    engine = create_engine(url, ping_after_idle_s=0.2)
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first, "the pool keeps its connection"
        postgres_server.admin(f"SELECT pg_terminate_backend({first})")
        await asyncio.sleep(0.3)
        replaced = await _backend_pid(engine)
        assert replaced != first
    finally:
        await engine.dispose()


async def test_a_connection_cut_right_after_its_last_use_fails_that_use_and_only_that_one(postgres_server):
    """Within the idle time no ping is made: the cut shows as the database error the service maps to 503, and
    the pool, having seen the disconnect, starts afresh for the next use."""
    url = postgres_server.create_database()
    engine = create_engine(url, ping_after_idle_s=60)
    try:
        first = await _backend_pid(engine)
        postgres_server.admin(f"SELECT pg_terminate_backend({first})")
        await asyncio.sleep(0.1)
        try:
            await _backend_pid(engine)
        except sa.exc.DBAPIError as error:
            assert error.connection_invalidated
        else:
            raise AssertionError("a connection the server cut answered without a ping")
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_connection_used_before_the_driver_read_its_end_is_dropped_as_cut(postgres_server, monkeypatch):
    """Used in the instant after the server terminated it, asyncpg says the connection is busy with another
    operation. That is a cut too: the use fails as a disconnect (the service answers 503) and the pool starts afresh."""
    url = postgres_server.create_database()
    engine = create_engine(url, ping_after_idle_s=60)
    try:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            await connection.execute(sa.text("SELECT 1"))  # not the statement below: that one is prepared on next use
            first = raw.get_server_pid()

        prepare = type(raw).prepare

        async def busy_once_cut(self, *args, **kwargs):
            if self is raw:
                raise asyncpg.exceptions.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
            return await prepare(self, *args, **kwargs)

        monkeypatch.setattr(type(raw), "prepare", busy_once_cut)
        with pytest.raises(sa.exc.DBAPIError) as error:
            await _backend_pid(engine)
        assert error.value.connection_invalidated
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


def test_only_errors_that_say_the_connection_is_gone_count_as_cuts():
    assert connection_cut(asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"))
    assert connection_cut(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"))
    assert connection_cut(
        asyncpg.exceptions.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
    )
    assert not connection_cut(asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"))
    assert not connection_cut(asyncpg.exceptions.InternalClientError("unexpected codec state"))
    assert not connection_cut(ValueError("a bug"))
