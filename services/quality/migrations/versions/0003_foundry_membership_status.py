"""foundry membership status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:38:54.986198
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("foundry_projection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("membership_status", sa.String(length=20), server_default="active", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("foundry_projection", schema=None) as batch_op:
        batch_op.drop_column("membership_status")
