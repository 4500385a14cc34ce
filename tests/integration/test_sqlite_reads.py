"""SQLite has one writer at a time: a request that only reads does not queue for the writer's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from shared.db import create_engine, dispose_reading_engine, reading_engine, session_factory
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


async def test_reads_of_a_sqlite_file_run_on_the_event_loops_thread_see_committed_rows_and_refuse_to_write(tmp_path):
    """Requests that only read use connections of their own that run on the event loop's thread (no hand-over to a
    driver thread per call); they see what writers committed, never what a writer has not, and cannot write."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    readers = reading_engine(engine)
    writer = None
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE lots (code TEXT PRIMARY KEY, units INTEGER NOT NULL)"))
            await conn.execute(sa.text("INSERT INTO lots VALUES ('L-1', 200)"))
        reads = session_factory(readers)
        loop_thread = threading.get_ident()

        async with reads() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            await driver.create_function("where_am_i", 0, threading.get_ident)
            row = (await session.execute(sa.text("SELECT where_am_i(), sum(units) FROM lots"))).one()
        assert tuple(row) == (loop_thread, 200)

        writer = sqlite3.connect(tmp_path / "reads.db", isolation_level=None, check_same_thread=False)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO lots VALUES ('L-2', 300)")  # not committed yet
        started = time.monotonic()
        async with reads() as session:
            assert (await session.execute(sa.text("SELECT sum(units) FROM lots"))).scalar() == 200
        assert time.monotonic() - started < 1, "the read waited for the writer"
        writer.execute("COMMIT")
        async with reads() as session:
            assert (await session.execute(sa.text("SELECT sum(units) FROM lots"))).scalar() == 500

        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            async with reads.begin() as session:
                await session.execute(sa.text("DELETE FROM lots"))
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM lots"))).scalar() == 2
    finally:
        if writer is not None:
            writer.close()
        await dispose_reading_engine(readers, engine)
        await engine.dispose()
    assert readers.sync_engine.pool.checkedin() == 0  # type: ignore[attr-defined]  # closed with the service
