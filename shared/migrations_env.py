"""The body of every service's `migrations/env.py`: runs Alembic on the connection it is handed."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine


def run_migrations(target_metadata: sa.MetaData) -> None:
    config = context.config
    options: dict[str, Any] = {"target_metadata": target_metadata, "render_as_batch": True, "compare_type": True}
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def run(connection: sa.Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return

    async def run_with_own_engine() -> None:
        url = config.get_main_option("sqlalchemy.url")
        assert url is not None, "alembic.ini names no database and no connection was handed over"
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(run)
        await engine.dispose()

    asyncio.run(run_with_own_engine())
