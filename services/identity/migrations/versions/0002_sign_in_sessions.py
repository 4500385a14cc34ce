"""sign-in sessions: renewable with a rotating refresh token, kept hashed

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_sessions",
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("started_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_hash", sa.String(length=64), nullable=True),
        sa.Column("rotated_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("session_id"),
        sa.UniqueConstraint("refresh_hash"),
    )
    with op.batch_alter_table("sign_in_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_sessions_ends_at"), ["ends_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_in_sessions_previous_hash"), ["previous_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_sessions_previous_hash"))
        batch_op.drop_index(batch_op.f("ix_sign_in_sessions_ends_at"))
    op.drop_table("sign_in_sessions")
