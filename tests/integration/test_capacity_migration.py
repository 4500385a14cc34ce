"""Upgrading a capacity database of the first schema keeps its foundries, who become active members."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from services.capacity import store
from services.capacity.app import SPEC
from services.capacity.domain import MembershipStatus
from shared.db import create_engine, migrate, session_factory


async def test_foundries_registered_before_membership_was_recorded_are_active_after_the_upgrade(make_settings):
    engine = create_engine(make_settings().database_url("capacity"))
    try:
        await migrate(engine, SPEC.migrations_dir, "0001")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO foundries (code, name, village, product_families, revision, registered_at, updated_at) "
                    "VALUES ('IKM-001', 'CV Cor Lama', 'Batur', '[\"PUMP_PARTS\"]', 2, :at, :at)"
                ),
                {"at": at},
            )
        await migrate(engine, SPEC.migrations_dir)
        async with session_factory(engine)() as session:
            foundry = await store.get_foundry(session, "IKM-001")
        assert foundry is not None
        assert (foundry.name, foundry.revision, foundry.membership_status, foundry.owner, foundry.furnaces) == (
            "CV Cor Lama", 2, MembershipStatus.ACTIVE, None, None,
        )  # fmt: skip
    finally:
        await engine.dispose()
