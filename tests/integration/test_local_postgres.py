"""`ceper.postgres.LocalPostgres`, as `ceper chaos` uses it: crashed and started again on the same port, data kept."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from ceper.postgres import CRASH_SAFE_SETTINGS, LocalPostgres, PostgresError

pytestmark = pytest.mark.postgres


async def _rows(server: LocalPostgres, database: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(host=server.host, port=server.port, user=server.user, database=database)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


@pytest.fixture
def root():
    # Not pytest's tmp_path: as root the server runs as the `postgres` user, who may not enter that tree.
    directory = Path(tempfile.mkdtemp(prefix="ceper-test-local-postgres-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_crashed_server_comes_back_on_its_port_with_its_data(root):
    server = LocalPostgres(root / "pg", settings=CRASH_SAFE_SETTINGS)
    server.init()
    try:
        port = server.start()
        server.create_database("foundries")
        await _rows(server, "foundries", "CREATE TABLE foundry (code text PRIMARY KEY)")
        await _rows(server, "foundries", "INSERT INTO foundry VALUES ('IKM-001')")
        first_pid = server.pid
        assert server.stop("immediate")  # like a crash: no checkpoint, the next start replays the WAL
        assert not server.running and not server.stop()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await _rows(server, "foundries", "SELECT 1")
        assert server.start(port=port) == port
        assert server.pid != first_pid
        assert [r["code"] for r in await _rows(server, "foundries", "SELECT code FROM foundry")] == ["IKM-001"]
        with pytest.raises(PostgresError, match="already running"):
            server.start(port=port)
    finally:
        server.remove()
    assert not (root / "pg").exists()
