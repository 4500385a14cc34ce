"""projections of capacity and quality

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:38:54.415034
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capacity_projection",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("changed_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("foundry_code", "product_family", "week"),
    )
    op.create_table(
        "certificate_projection",
        sa.Column("certificate_id", sa.String(length=64), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("tkdn_percent", sa.Float(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("updated_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("certificate_id"),
    )
    with op.batch_alter_table("certificate_projection", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificate_projection_foundry_code"), ["foundry_code"], unique=False)

    op.create_table(
        "lot_projection",
        sa.Column("lot_code", sa.String(length=64), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("item_code", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("allocation_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("updated_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lot_code"),
    )
    with op.batch_alter_table("lot_projection", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lot_projection_order_id"), ["order_id"], unique=False)

    op.create_table(
        "quality_status_projection",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("changed_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("foundry_code"),
    )
    op.create_table(
        "reservation_projection",
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("allocation_id", sa.String(length=64), nullable=True),
        sa.Column("plan_version", sa.Integer(), nullable=True),
        sa.Column("updated_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id"),
    )
    with op.batch_alter_table("reservation_projection", schema=None) as batch_op:
        batch_op.create_index("ix_reservation_projection_order", ["order_id"], unique=False)
        batch_op.create_index("ix_reservation_projection_week", ["product_family", "week"], unique=False)

    with op.batch_alter_table("foundry_projection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("membership_status", sa.String(length=20), server_default="active", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("foundry_projection", schema=None) as batch_op:
        batch_op.drop_column("membership_status")

    with op.batch_alter_table("reservation_projection", schema=None) as batch_op:
        batch_op.drop_index("ix_reservation_projection_week")
        batch_op.drop_index("ix_reservation_projection_order")

    op.drop_table("reservation_projection")
    op.drop_table("quality_status_projection")
    with op.batch_alter_table("lot_projection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lot_projection_order_id"))

    op.drop_table("lot_projection")
    with op.batch_alter_table("certificate_projection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_projection_foundry_code"))

    op.drop_table("certificate_projection")
    op.drop_table("capacity_projection")
