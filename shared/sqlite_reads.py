"""SQLite connections that run on the event loop's own thread, for requests that only read.

aiosqlite runs every call of a connection on a thread of its own, and SQLAlchemy's adapter makes four calls per
statement (open a cursor, execute, fetch, close): each one a hand-over to that thread and back, under the GIL.
An order's page is a handful of statements, so a GET on SQLite spent most of its time handing over rather than
reading. A read of a local WAL file never waits for the writer and answers in microseconds from the page cache,
so it is cheaper to run it where the request already is. Writers keep aiosqlite: a writer may wait seconds for the
write lock, which must never hold up the event loop.

The classes below offer what SQLAlchemy's aiosqlite adapter calls on an aiosqlite connection, with coroutines that
finish without ever suspending.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class _Cursor:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._cursor: sqlite3.Cursor | None = None

    @property
    def _open(self) -> sqlite3.Cursor:
        if self._cursor is None:
            self._cursor = self._connection.cursor()
        return self._cursor

    async def __aenter__(self) -> _Cursor:
        self._cursor = self._connection.cursor()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def description(self) -> Any:
        return self._open.description

    @property
    def rowcount(self) -> int:
        return self._open.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._open.lastrowid

    @property
    def arraysize(self) -> int:
        return self._open.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._open.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
        self._open.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        self._open.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._open.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._open.fetchmany(size if size is not None else self._open.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._open.fetchall()

    async def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()


class _RunHere:
    """Stands in for aiosqlite's queue of calls for its thread: SQLAlchemy sets a connection's isolation level
    through it, with a future it then awaits."""

    def put_nowait(self, call: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = call
        try:
            future.set_result(function())
        except Exception as exc:  # handed to whoever awaits the future, as aiosqlite would
            future.set_exception(exc)


class LoopConnection:
    """An aiosqlite-shaped connection whose statements run on the calling thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._tx = _RunHere()

    @property
    def _connection(self) -> sqlite3.Connection | None:  # aiosqlite's name: None once closed
        return self._conn

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._live().isolation_level

    def cursor(self) -> _Cursor:
        return _Cursor(self._live())

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
        cursor = self.cursor()
        return await cursor.execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._live().create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._live().commit()

    async def rollback(self) -> None:
        self._live().rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


async def connect(database: str, *, timeout_s: float) -> LoopConnection:
    """A connection to the database file; `timeout_s` bounds how long a statement waits on a lock (readers of a WAL
    file wait only in rare moments, such as another process recovering the file)."""
    # The pool may hand a connection to another thread's event loop (tests run apps on threads), and one that is
    # collected is closed wherever that happens: the connection is never used by two threads at once.
    return LoopConnection(sqlite3.connect(database, timeout=timeout_s, isolation_level=None, check_same_thread=False))
