"""standard weekly capacity per foundry and family, for weeks no capacity event listed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "standard_capacity_projection",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("weekly_units", sa.Integer(), nullable=False),
        sa.Column("changed_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("foundry_code", "product_family"),
    )


def downgrade() -> None:
    op.drop_table("standard_capacity_projection")
