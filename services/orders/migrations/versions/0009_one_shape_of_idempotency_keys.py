"""idempotency keys in the shape every service shares: scope and resource id

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:00:00

A buyer's key was stored under its buyer code with the order's id; it is now stored under the scope
`purchase-orders:<buyer code>` with the id of what it made, like capacity's keys. Existing keys keep working.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPE_PREFIX = "purchase-orders:"


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column(
            "buyer_code",
            new_column_name="scope",
            existing_type=sa.String(length=20),
            type_=sa.String(length=100),
            existing_nullable=False,
        )
        batch.alter_column("order_id", new_column_name="resource_id", existing_type=sa.String(length=64), existing_nullable=False)
    op.execute(f"UPDATE idempotency_keys SET scope = '{SCOPE_PREFIX}' || scope")


def downgrade() -> None:
    # Only purchase orders took keys in orders, so every scope carries the prefix.
    op.execute(f"UPDATE idempotency_keys SET scope = substr(scope, {len(SCOPE_PREFIX) + 1})")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column(
            "scope",
            new_column_name="buyer_code",
            existing_type=sa.String(length=100),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch.alter_column("resource_id", new_column_name="order_id", existing_type=sa.String(length=64), existing_nullable=False)
