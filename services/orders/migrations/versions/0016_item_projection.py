"""item projection: quality's catalogue as orders knows it, seeded with the items the platform starts with

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Version 1 of quality's seeded catalogue (quality's migration 0007), so orders are received before quality's first
# announcement arrives; the announcement of the same version changes nothing.
SEED: tuple[tuple[str, str, str, str, int, list[str], float | None], ...] = (
    ("BB-COMP-K", "Blok rem komposit tipe K", "BRAKE_BLOCK_COMPOSITE", "pcs", 200, ["SNI", "ISO9001"], 25.0),
    ("BB-COMP-LL", "Blok rem komposit tipe LL", "BRAKE_BLOCK_COMPOSITE", "pcs", 200, ["SNI", "ISO9001"], 25.0),
    ("BB-CI", "Blok rem besi cor", "BRAKE_BLOCK_CAST_IRON", "pcs", 200, ["SNI", "ISO9001"], None),
    ("TMMIN-PRT", "Alat bantu pembuatan ring piston (TMMIN)", "AUTOMOTIVE_PARTS", "pcs", 10, ["ISO9001"], None),
    ("PMP-IMP-FC200", "Impeler pompa sentrifugal besi cor FC200", "PUMP_PARTS", "pcs", 20, ["ISO9001"], None),
    ("KPL-BOLDER-FCD450", "Bolder tambat kapal besi cor nodular FCD450", "SHIP_PARTS", "set", 5, ["ISO9001"], None),
    ("KA-KLEM-REL", "Klem penambat rel besi cor nodular", "RAILWAY_PARTS", "pcs", 100, ["ISO9001"], 25.0),
    ("MSN-RUMAH-GIR", "Rumah gir mesin pabrik besi cor FC250", "MACHINE_PARTS", "pcs", 10, [], None),
)


def upgrade() -> None:
    items = op.create_table(
        "item_projection",
        sa.Column("item_code", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("min_lot", sa.Integer(), nullable=False),
        sa.Column("certificates", sa.JSON(), nullable=False),
        sa.Column("min_tkdn_percent", sa.Float(), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("published_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_code"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        items,
        [
            {"item_code": code, "version": 1, "name": name, "product_family": family, "unit": unit, "min_lot": min_lot,
             "certificates": certificates, "min_tkdn_percent": tkdn, "retired": False, "published_at": now}
            for code, name, family, unit, min_lot, certificates, tkdn in SEED
        ],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("item_projection")
