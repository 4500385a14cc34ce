"""foundry details, capacity calendars, the ledger and reservations; order_demand replaced by reservations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:58:34.669383
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
        "capacity_calendars",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("foundry_code", "product_family"),
    )
    op.create_table(
        "capacity_changes",
        sa.Column("change_id", sa.String(length=40), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("weekly_units", sa.Integer(), nullable=True),
        sa.Column("from_week", sa.String(length=8), nullable=True),
        sa.Column("from_date", sa.Date(), nullable=True),
        sa.Column("to_date", sa.Date(), nullable=True),
        sa.Column("withdraws", sa.String(length=40), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("reported_by", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("change_id"),
        sa.UniqueConstraint("foundry_code", "product_family", "seq", name="uq_capacity_changes_calendar_seq"),
    )
    with op.batch_alter_table("capacity_changes", schema=None) as batch_op:
        batch_op.create_index("ix_capacity_changes_family", ["product_family"], unique=False)

    op.create_table(
        "capacity_ledger",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("foundry_code", "product_family", "week"),
    )
    with op.batch_alter_table("capacity_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_capacity_ledger_family_week", ["product_family", "week"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_table(
        "lot_consumptions",
        sa.Column("lot_code", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("recorded_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lot_code", "reservation_id"),
    )
    op.create_table(
        "order_plans",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("consumed_quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("allocation_id", sa.String(length=100), nullable=True),
        sa.Column("plan_version", sa.Integer(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("item_code", sa.String(length=40), nullable=True),
        sa.Column("hold_expires_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("ix_reservations_cell", ["foundry_code", "product_family", "week"], unique=False)
        batch_op.create_index("ix_reservations_order", ["order_id"], unique=False)
        batch_op.create_index("ix_reservations_state", ["state"], unique=False)

    op.drop_table("order_demand")
    with op.batch_alter_table("foundries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("npwp", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("membership_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("furnaces", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("presses", sa.Integer(), nullable=True))
    # Foundries registered before membership was recorded are members in good standing.
    op.execute("UPDATE foundries SET membership_status = 'active'")
    with op.batch_alter_table("foundries", schema=None) as batch_op:
        batch_op.alter_column("membership_status", existing_type=sa.String(length=20), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("foundries", schema=None) as batch_op:
        batch_op.drop_column("presses")
        batch_op.drop_column("furnaces")
        batch_op.drop_column("membership_status")
        batch_op.drop_column("npwp")
        batch_op.drop_column("owner")

    op.create_table(
        "order_demand",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("buyer_code", sa.String(length=20), nullable=False),
        sa.Column("po_number", sa.String(length=100), nullable=False),
        sa.Column("total_quantity", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("received_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_state")
        batch_op.drop_index("ix_reservations_order")
        batch_op.drop_index("ix_reservations_cell")

    op.drop_table("reservations")
    op.drop_table("order_plans")
    op.drop_table("lot_consumptions")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("capacity_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_ledger_family_week")

    op.drop_table("capacity_ledger")
    with op.batch_alter_table("capacity_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_changes_family")

    op.drop_table("capacity_changes")
    op.drop_table("capacity_calendars")
