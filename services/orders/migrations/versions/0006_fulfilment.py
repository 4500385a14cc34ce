"""fulfilment: shipments, handover, line risk and closing reasons

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("buyer_code", sa.String(length=20), nullable=False),
        sa.Column("surat_jalan_number", sa.String(length=100), nullable=False),
        sa.Column("site_code", sa.String(length=20), nullable=False),
        sa.Column("vehicle_plate", sa.String(length=20), nullable=False),
        sa.Column("driver_name", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("bast_number", sa.String(length=100), nullable=True),
        sa.Column("signed_by", sa.String(length=200), nullable=True),
        sa.Column("signed_on", sa.Date(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("surat_jalan_number"),
    )
    op.create_index(op.f("ix_shipments_order_id"), "shipments", ["order_id"], unique=False)
    op.create_table(
        "shipment_items",
        sa.Column("shipment_id", sa.String(length=64), nullable=False),
        sa.Column("lot_code", sa.String(length=64), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Integer(), nullable=True),
        sa.Column("tkdn_percent", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "lot_code", "due_date"),
    )
    op.create_index(op.f("ix_shipment_items_order_id"), "shipment_items", ["order_id"], unique=False)
    with op.batch_alter_table("plans") as batch_op:
        batch_op.add_column(sa.Column("risk", sa.JSON(), nullable=True))
        batch_op.alter_column("solver", existing_type=sa.String(length=30), type_=sa.String(length=60), existing_nullable=False)
    with op.batch_alter_table("purchase_orders") as batch_op:
        batch_op.add_column(sa.Column("status_reason", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("purchase_orders") as batch_op:
        batch_op.drop_column("status_reason")
    with op.batch_alter_table("plans") as batch_op:
        batch_op.alter_column("solver", existing_type=sa.String(length=60), type_=sa.String(length=30), existing_nullable=False)
        batch_op.drop_column("risk")
    op.drop_index(op.f("ix_shipment_items_order_id"), table_name="shipment_items")
    op.drop_table("shipment_items")
    op.drop_index(op.f("ix_shipments_order_id"), table_name="shipments")
    op.drop_table("shipments")
