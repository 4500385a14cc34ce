"""foundry-weeks capacity refused for an order

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refused_cells",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("refused_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "foundry_code", "week"),
    )


def downgrade() -> None:
    op.drop_table("refused_cells")
