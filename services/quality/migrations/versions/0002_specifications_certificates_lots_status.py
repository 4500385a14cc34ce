"""specifications certificates lots results quality status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:42:22.275119
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
        "certificates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("tkdn_percent", sa.Float(), nullable=True),
        sa.Column("certified_workers", sa.Integer(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("granted_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "issuer", "number", name="uq_certificates_kind_issuer_number"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_foundry_code"), ["foundry_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_valid_until"), ["valid_until"], unique=False)

    op.create_table(
        "foundry_quality",
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("computed_status", sa.String(length=12), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("lots_considered", sa.Integer(), nullable=False),
        sa.Column("lots_passed", sa.Integer(), nullable=False),
        sa.Column("overridden", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("changed_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("foundry_code"),
    )
    op.create_table(
        "quality_status_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("previous_status", sa.String(length=12), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("overridden", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("changed_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("quality_status_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quality_status_changes_foundry_code"), ["foundry_code"], unique=False)

    op.create_table(
        "specifications",
        sa.Column("item_code", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("inspection_level", sa.String(length=4), nullable=False),
        sa.Column("aql", sa.Float(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("effective_from", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_code", "version"),
    )
    op.create_table(
        "certificate_notices",
        sa.Column("certificate_id", sa.String(length=40), nullable=False),
        sa.Column("notice", sa.String(length=10), nullable=False),
        sa.Column("given_on", sa.Date(), nullable=False),
        sa.Column("created_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
        ),
        sa.PrimaryKeyConstraint("certificate_id", "notice"),
    )
    op.create_table(
        "lots",
        sa.Column("lot_code", sa.String(length=40), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("item_code", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("allocation_id", sa.String(length=100), nullable=True),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("inspection_level", sa.String(length=4), nullable=False),
        sa.Column("aql", sa.Float(), nullable=False),
        sa.Column("code_letter", sa.String(length=1), nullable=False),
        sa.Column("plan_letter", sa.String(length=1), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("acceptance_number", sa.Integer(), nullable=False),
        sa.Column("rejection_number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("registered_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_code", "spec_version"],
            ["specifications.item_code", "specifications.version"],
        ),
        sa.PrimaryKeyConstraint("lot_code"),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lots_foundry_code"), ["foundry_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_lots_order_id"), ["order_id"], unique=False)

    op.create_table(
        "lot_results",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("lot_code", sa.String(length=40), nullable=False),
        sa.Column("foundry_code", sa.String(length=20), nullable=False),
        sa.Column("report_number", sa.String(length=100), nullable=False),
        sa.Column("laboratory", sa.String(length=200), nullable=False),
        sa.Column("tested_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("nonconforming", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("certificates", sa.JSON(), nullable=False),
        sa.Column("recorded_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_code"],
            ["lots.lot_code"],
        ),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("laboratory", "report_number", name="uq_lot_results_laboratory_report"),
        sa.UniqueConstraint("lot_code"),
    )
    with op.batch_alter_table("lot_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lot_results_foundry_code"), ["foundry_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lot_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lot_results_foundry_code"))

    op.drop_table("lot_results")
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lots_order_id"))
        batch_op.drop_index(batch_op.f("ix_lots_foundry_code"))

    op.drop_table("lots")
    op.drop_table("certificate_notices")
    op.drop_table("specifications")
    with op.batch_alter_table("quality_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quality_status_changes_foundry_code"))

    op.drop_table("quality_status_changes")
    op.drop_table("foundry_quality")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_valid_until"))
        batch_op.drop_index(batch_op.f("ix_certificates_foundry_code"))

    op.drop_table("certificates")
