"""Each service's Alembic migrations build exactly the schema its code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.db import UtcDateTime, alembic_config, create_engine, current_revision, head_revision, migrate
from shared.service import ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["orders", "capacity", "quality"]
WITH_DATABASE = [*SERVICES, "identity"]  # identity has a database but no outbox or inbox


def spec_of(service: str) -> ServiceSpec:
    import importlib

    return importlib.import_module(f"services.{service}.app").SPEC


def differences(connection: sa.Connection, metadata: sa.MetaData) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(context, metadata)


async def tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_exactly_the_declared_schema(make_settings, service: str):
    spec = spec_of(service)
    assert spec.metadata is not None and spec.migrations_dir is not None and spec.backbone is not None
    engine = create_engine(make_settings().database_url(service))
    try:
        assert await tables(engine) == set()
        await migrate(engine, spec.migrations_dir)
        async with engine.connect() as conn:
            assert await current_revision(conn) == head_revision(spec.migrations_dir)
            assert await conn.run_sync(differences, spec.metadata) == []
        assert await tables(engine) == set(spec.metadata.tables) | {"alembic_version"}

        # A second upgrade is a no-op: it keeps the data and the revision.
        outbox = spec.backbone.outbox
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(outbox).values(
                    event_id="e-1",
                    event_type="t",
                    topic="ceper.orders.v1",
                    key="k",
                    headers={},
                    payload=b"{}",
                    created_at=datetime.now(UTC),
                )
            )
        await migrate(engine, spec.migrations_dir)
        async with engine.connect() as conn:
            assert await current_revision(conn) == head_revision(spec.migrations_dir)
            assert (await conn.execute(sa.select(outbox.c.event_id))).scalars().all() == ["e-1"]
            assert await conn.run_sync(differences, spec.metadata) == []
    finally:
        await engine.dispose()


def revision_before(migrations_dir: Path, doc: str) -> str:
    """The revision a migration (named by the first line of its docstring) upgrades from."""
    scripts = ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://"))
    [script] = [s for s in scripts.walk_revisions() if s.doc == doc]
    assert isinstance(script.down_revision, str)
    return script.down_revision


async def migrate_down(engine, migrations_dir: Path, revision: str) -> None:
    config = alembic_config(migrations_dir, engine.url.render_as_string(hide_password=False))

    def downgrade(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_outbox_keeps_only_the_events_still_to_send_after_the_upgrade(make_settings, service: str):
    """Rows the relay had marked sent are on the topic already and leave; a row still to send stays, and the
    downgrade gives it back its empty mark."""
    spec = spec_of(service)
    assert spec.metadata is not None and spec.migrations_dir is not None
    marked = revision_before(spec.migrations_dir, "outbox rows leave once sent")
    engine = create_engine(make_settings().database_url(service))
    outbox = sa.table(
        "outbox", sa.column("event_id"), sa.column("event_type"), sa.column("topic"), sa.column("key"),
        sa.column("headers", sa.JSON), sa.column("payload", sa.LargeBinary), sa.column("created_at", UtcDateTime),
        sa.column("sent_at", UtcDateTime),
    )  # fmt: skip
    at = datetime(2026, 12, 1, tzinfo=UTC)
    row = {"event_type": "t", "topic": f"ceper.{service}.v1", "key": "k", "headers": {}, "payload": b"{}", "created_at": at}
    try:
        await migrate(engine, spec.migrations_dir, marked)
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(outbox),
                [{**row, "event_id": "sent", "sent_at": at}, {**row, "event_id": "to-send", "sent_at": None}],
            )
        await migrate(engine, spec.migrations_dir)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(outbox.c.event_id))).scalars().all() == ["to-send"]
            assert await conn.run_sync(differences, spec.metadata) == []

        await migrate_down(engine, spec.migrations_dir, marked)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(outbox.c.event_id, outbox.c.sent_at))).all() == [("to-send", None)]
    finally:
        await engine.dispose()


def test_every_service_has_one_migration_head():
    for service in WITH_DATABASE:
        spec = spec_of(service)
        assert spec.migrations_dir is not None and (spec.migrations_dir / "env.py").is_file()
        assert head_revision(spec.migrations_dir) is not None


async def test_ceper_migrate_upgrades_every_service(make_settings, tmp_path: Path):
    settings = make_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEPER_")}
    env["CEPER_VAR_DIR"] = str(tmp_path / "unused")  # every database is named explicitly below
    urls = {}
    for service in WITH_DATABASE:
        urls[service] = settings.database_url(service)
        env[f"CEPER_{service.upper()}_DATABASE_URL"] = urls[service]
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ceper", "migrate"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{service}: database at the newest schema" for service in WITH_DATABASE]
    assert not (tmp_path / "unused").exists()
    for service in WITH_DATABASE:
        spec = spec_of(service)
        engine = create_engine(urls[service])
        try:
            async with engine.connect() as conn:
                assert await current_revision(conn) == head_revision(spec.migrations_dir)  # type: ignore[arg-type]
                assert await conn.run_sync(differences, spec.metadata) == []
        finally:
            await engine.dispose()


async def test_identity_migrations_build_exactly_the_declared_schema(make_settings, request: pytest.FixtureRequest, backend: str):
    spec = spec_of("identity")
    assert spec.metadata is not None and spec.migrations_dir is not None and spec.backbone is None
    url = request.getfixturevalue("postgres_server").create_database() if backend == "postgresql" else None
    engine = create_engine(url or make_settings().database_url("identity"))
    try:
        await migrate(engine, spec.migrations_dir)
        await migrate(engine, spec.migrations_dir)  # a second upgrade is a no-op
        async with engine.connect() as conn:
            assert await current_revision(conn) == head_revision(spec.migrations_dir)
            assert await conn.run_sync(differences, spec.metadata) == []
        assert await tables(engine) == set(spec.metadata.tables) | {"alembic_version"}
    finally:
        await engine.dispose()


# A replica's start: migrate its database once every replica is ready to, so they really start together.
REPLICA_START = """
import asyncio, sys, time
from pathlib import Path
from services.orders.app import SPEC
from shared.db import create_engine, migrate

async def main() -> None:
    engine = create_engine(sys.argv[1])
    barrier = Path(sys.argv[2])
    (barrier / sys.argv[3]).touch()
    while not (barrier / "go").exists():
        time.sleep(0.005)
    await migrate(engine, SPEC.migrations_dir)
    await engine.dispose()

asyncio.run(main())
"""


async def test_replicas_starting_together_migrate_one_at_a_time(make_settings, tmp_path: Path):
    """Four processes migrate one fresh database at the same instant: one upgrades, the others wait and find
    nothing to do. Without the lock they create the same tables at once and fail."""
    url = make_settings().database_url("orders")
    spec = spec_of("orders")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEPER_")}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    pipe = asyncio.subprocess.PIPE
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", REPLICA_START, url, str(barrier), f"ready-{n}", cwd=ROOT, env=env, stdout=pipe, stderr=pipe
        )
        for n in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < len(replicas) and time.monotonic() < deadline:  # noqa: ASYNC110 — files other processes create
        await asyncio.sleep(0.01)
    (barrier / "go").touch()
    outcomes = [await asyncio.wait_for(replica.communicate(), 180) for replica in replicas]
    for replica, (_, stderr) in zip(replicas, outcomes, strict=True):
        assert replica.returncode == 0, stderr.decode()[-3000:]
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await current_revision(conn) == head_revision(spec.migrations_dir)  # type: ignore[arg-type]
            assert await conn.run_sync(differences, spec.metadata) == []
    finally:
        await engine.dispose()
