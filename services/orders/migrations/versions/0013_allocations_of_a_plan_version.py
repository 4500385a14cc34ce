"""allocations indexed by order and plan version

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The plan in force is read by order and version: without this, every read scans every version's rows.
    op.create_index("ix_allocations_order_version", "allocations", ["order_id", "plan_version"])


def downgrade() -> None:
    op.drop_index("ix_allocations_order_version", table_name="allocations")
