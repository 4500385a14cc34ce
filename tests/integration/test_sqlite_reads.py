"""SQLite has one writer at a time: a request that only reads does not queue for the writer's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
import sqlalchemy as sa

from shared.db import create_engine
from tests.integration.capacity_support import foundry, register, run_capacity


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL's readers never wait for writers
async def test_a_get_is_answered_while_a_writer_holds_the_sqlite_lock(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001"))
        writer = sqlite3.connect(sa.make_url(settings.database_url("capacity")).database, isolation_level=None, timeout=1)
        try:
            writer.execute("BEGIN IMMEDIATE")  # another process's write transaction, in no hurry to finish
            started = time.monotonic()
            read = await capacity.http.get("/v1/foundries/IKM-001")
            assert read.status_code == 200, read.text
            assert time.monotonic() - started < 2, "the read waited for the writer"
            # A write does wait its turn: it is answered once the other writer is done.
            patch = asyncio.create_task(capacity.http.patch("/v1/foundries/IKM-001", json={"name": "CV Sabar"}))
            await asyncio.sleep(0.5)
            assert not patch.done()
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        patched = await patch
        assert patched.status_code == 200, patched.text
        assert (await capacity.http.get("/v1/foundries/IKM-001")).json()["name"] == "CV Sabar"


async def test_a_fresh_database_busy_with_a_writer_is_switched_to_wal_once_the_writer_is_done(tmp_path):
    """A new file is in rollback-journal mode until a connection switches it to WAL, which needs the file to
    itself; SQLite refuses that at once, without waiting, while another process writes — as replicas starting
    together on a fresh database do. The connection waits its turn instead of failing."""
    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_s=10)
    try:
        connecting = asyncio.create_task(_journal_mode(engine))
        await asyncio.sleep(0.5)
        assert not connecting.done(), "the connection did not wait for the writer"
        writer.execute("COMMIT")
        assert await asyncio.wait_for(connecting, 10) == "wal"
    finally:
        writer.close()
        await engine.dispose()


async def _journal_mode(engine) -> str:
    async with engine.connect() as connection:
        return (await connection.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
