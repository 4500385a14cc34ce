"""Database plumbing shared by the services: engines, sessions, the backbone tables, Alembic migrations.

Each service owns one database and one `MetaData`; `backbone_tables(metadata)` adds the outbox and inbox
tables to it so the service's own migrations create them.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

from . import sqlite_reads

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements only INTEGER keys


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores no zone, so it is restored on read)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times are stored as aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class BackboneTables:
    outbox: sa.Table
    inbox: sa.Table


def backbone_tables(metadata: sa.MetaData) -> BackboneTables:
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        # No "sent" mark: the relay deletes a row once the broker acked it, so every row here is still to send.
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    return BackboneTables(outbox=outbox, inbox=inbox)


def is_sqlite(url: str | sa.URL) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


# A pooled PostgreSQL connection used within this long is handed out without a ping first.
PING_AFTER_IDLE_S = 1.0
# Connections a process keeps, and the most it opens: every one it opens stays for the next request. A pool that
# kept fewer than it opened closed the extra ones on return and opened them again for the next burst; under 16
# concurrent readers a sixth of the requests paid for a new connection (SQLite: a thread and its pragmas too).
POOL_SIZE = 20


def create_engine(url: str, *, sqlite_busy_timeout_s: float = 30.0, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> AsyncEngine:
    """An engine for a service's database; on SQLite a writer waits `sqlite_busy_timeout_s` for the write lock,
    on PostgreSQL a connection idle for `ping_after_idle_s` is pinged before use."""
    if is_sqlite(url):
        database = sa.make_url(url).database
        in_memory = not database or database == ":memory:"  # one connection, shared: no pool to size
        if not in_memory:
            Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
        pool = {} if in_memory else {"pool_size": POOL_SIZE, "max_overflow": 0}
        engine = create_async_engine(url, connect_args={"timeout": sqlite_busy_timeout_s}, **pool)
        busy_timeout_ms = int(sqlite_busy_timeout_s * 1000)
        event.listen(engine.sync_engine, "connect", lambda dbapi, record: _sqlite_pragmas(dbapi, record, busy_timeout_ms))
        # pysqlite's own transaction handling defers BEGIN; take it over so SAVEPOINTs and locking behave.
        # Writers take the lock up front (no failed lock upgrades); readers that say so do not take it.
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0)
    _ping_when_idle(engine, ping_after_idle_s)
    event.listen(engine.sync_engine, "handle_error", _cut_is_a_disconnect)
    return engine


# SQLSTATEs that say the server ended the session: connection exceptions, shutdown, crash, not yet accepting.
_CUT_STATES = ("08", "57P01", "57P02", "57P03")


def connection_cut(error: BaseException | None) -> bool:
    """Whether a driver error says the connection itself is gone, whatever the statement was.

    asyncpg reports a connection the server terminated as busy ("another operation is in progress") when it is used
    after the server's last message arrived but before the socket's end did: that message left the protocol waiting
    for a reply that never comes. Within a SQLAlchemy connection nothing else runs two operations at once.
    """
    for cause in (error, getattr(error, "__cause__", None)):
        if cause is None:
            continue
        if str(getattr(cause, "sqlstate", None) or "").startswith(_CUT_STATES):
            return True
        if isinstance(cause, asyncpg.exceptions.InternalClientError) and "another operation" in str(cause):
            return True
    return False


def _cut_is_a_disconnect(context: sa.engine.ExceptionContext) -> None:
    """The pool drops a connection the server cut, and the error says so (`connection_invalidated`): the service
    answers 503, and the next use gets a fresh connection."""
    if not context.is_disconnect and connection_cut(context.original_exception):
        context.is_disconnect = True


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Pings a pooled connection before use only when it has sat idle: one a request or a consumer gave back a
    moment ago answers for itself, and the ping (begin, `;`, rollback with asyncpg) made a third of a short
    read's round trips. A connection that does not answer is swapped for a fresh one by the pool (it retries a
    checkout refused with DisconnectionError); one cut while in use fails that use, as it would after a ping."""
    dialect = engine.dialect

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["ceper_used_at"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        used_at = record.info.get("ceper_used_at")  # none on a connection just made
        if used_at is None or time.monotonic() - used_at < idle_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure to answer: this connection is done
            raise sa.exc.DisconnectionError(f"a pooled connection did not answer: {exc}") from exc

    event.listen(engine.sync_engine.pool, "checkin", checkin)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


READ_ONLY = {"ceper_read_only": True}  # execution options of a connection that only reads
# How long a SQLite read waits on a lock, on the event loop's thread: readers of a WAL file do not wait for the writer,
# only in rare moments (another process recovering the file), and a long wait would hold up every request.
READER_BUSY_TIMEOUT_MS = 2000


def reading_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine as requests that only read use it. SQLite: a plain BEGIN, which does not queue for the single
    writer's lock; on a database file, connections of the readers' own that run on the event loop's thread and
    refuse to write. PostgreSQL: no transaction at all; under READ COMMITTED each statement reads at its own
    snapshot inside a transaction too, so one only cost a BEGIN and a ROLLBACK round trip per request."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**READ_ONLY, isolation_level="AUTOCOMMIT")
    database = engine.url.database
    if not database or database == ":memory:":  # one connection, shared with the writers
        return engine.execution_options(**READ_ONLY)
    # A database file: reads run on the event loop's thread (see shared/sqlite_reads.py), on connections of their own.
    readers = create_async_engine(
        engine.url,
        async_creator=partial(sqlite_reads.connect, database, timeout_s=READER_BUSY_TIMEOUT_MS / 1000),
        pool_size=POOL_SIZE,
        max_overflow=0,
    )
    event.listen(readers.sync_engine, "connect", _sqlite_reader_pragmas)
    event.listen(readers.sync_engine, "begin", _sqlite_begin)
    return readers.execution_options(**READ_ONLY)


async def dispose_reading_engine(readers: AsyncEngine, engine: AsyncEngine) -> None:
    """Closes the connections of `engine`'s reading engine when it has its own (SQLite files); one that shares the
    writers' pool is closed with them."""
    if readers.sync_engine.pool is not engine.sync_engine.pool:
        await readers.dispose()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("ceper_read_only") else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_timeout_ms: int) -> None:
    # Readers never block the single writer under WAL; busy_timeout queues writers instead of failing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    _use_write_ahead_log(cursor, busy_timeout_ms / 1000)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_reader_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record, READER_BUSY_TIMEOUT_MS)
    # A request that only reads never writes: one that tried would wait for the writer's lock on the event loop.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _use_write_ahead_log(cursor: Any, wait_s: float) -> None:
    """Puts the database file in WAL mode, once: the mode is stored in the file, so later connections only read it.

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without its busy
    handler, when connections opening a fresh file together would otherwise wait on each other: the switch is
    retried until one of them has made it or `wait_s` has passed.
    """
    deadline = time.monotonic() + wait_s
    for pause in itertools.chain([0.005, 0.01, 0.02, 0.05], itertools.repeat(0.1)):
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)


async def database_answers(engine: AsyncEngine, timeout_s: float) -> bool:
    """Whether the database answers a health probe within `timeout_s`: tells an outage from a faulty event.

    PostgreSQL: `SELECT 1` on a pooled connection (checked before use). SQLite: the write lock taken and given
    back on a connection of its own, since a `SELECT 1` answers even when the file is locked or unwritable.
    """
    try:
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if not database or database == ":memory:":
                return True
            return await asyncio.wait_for(asyncio.to_thread(_sqlite_writable, database, timeout_s), timeout_s + 1)
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # any failure to answer is the answer
        return False


def _sqlite_writable(database: str, timeout_s: float) -> bool:
    # A missing file would be created empty by connect(): that is no database answering.
    uri = Path(database).resolve().as_uri() + "?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    finally:
        connection.close()


async def upsert(session: AsyncSession, table: sa.Table, values: dict[str, Any]) -> None:
    """Inserts the row, or updates it where its primary key exists; portable across SQLite and PostgreSQL."""
    where = [column == values[column.name] for column in table.primary_key.columns]
    exists = (await session.execute(sa.select(*table.primary_key.columns).where(*where))).first()
    if exists:
        await session.execute(sa.update(table).where(*where).values(**values))
    else:
        await session.execute(sa.insert(table).values(**values))


def session_factory(engine: AsyncEngine, **info: Any) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


# --- migrations ---------------------------------------------------------------------------------------


def alembic_config(migrations_dir: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Key of the advisory lock migrations take on PostgreSQL (advisory locks are per database: one per service).
MIGRATION_LOCK_KEY = zlib.crc32(b"ceper-migrations")


async def migrate(engine: AsyncEngine, migrations_dir: Path, revision: str = "head") -> None:
    """Upgrades the database to `revision` on the given engine (Alembic's connection-sharing recipe).

    One process at a time: replicas starting together queue for a lock held until the upgrade commits, and
    those after the first find nothing left to do. PostgreSQL: a transaction-scoped advisory lock, released by
    the commit or by the server when the process dies. SQLite: the database's write lock, which the upgrade's
    transaction takes as it begins (`BEGIN IMMEDIATE`); the DDL is transactional there too.
    """
    config = alembic_config(migrations_dir, engine.url.render_as_string(hide_password=False))

    def upgrade(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await connection.run_sync(upgrade)


async def current_revision(connection: AsyncConnection) -> str | None:
    def read(sync_connection: sa.Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    return await connection.run_sync(read)


def head_revision(migrations_dir: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://")).get_current_head()
