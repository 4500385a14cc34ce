"""SQLite has one writer at a time: a request that only reads does not queue for the writer's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
import sqlalchemy as sa

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
