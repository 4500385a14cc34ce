"""item catalogue: every version of every item, seeded with the items the cooperative makes today

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# code, name in Indonesian, name in English, product family, unit, minimum lot, certificates, TKDN minimum, AQL.
# The brake blocks and TMMIN's tooling as orders knew them; the rest are assumptions a QA officer edits.
SEED: tuple[tuple[str, str, str, str, str, int, list[str], float | None, float], ...] = (
    ("BB-COMP-K", "Blok rem komposit tipe K", "Composite brake block, type K", "BRAKE_BLOCK_COMPOSITE", "pcs", 200,
     ["SNI", "ISO9001"], 25.0, 2.5),
    ("BB-COMP-LL", "Blok rem komposit tipe LL", "Composite brake block, type LL", "BRAKE_BLOCK_COMPOSITE", "pcs", 200,
     ["SNI", "ISO9001"], 25.0, 2.5),
    ("BB-CI", "Blok rem besi cor", "Cast-iron brake block", "BRAKE_BLOCK_CAST_IRON", "pcs", 200, ["SNI", "ISO9001"], None, 2.5),
    ("TMMIN-PRT", "Alat bantu pembuatan ring piston (TMMIN)", "Piston-ring tooling aid (TMMIN)", "AUTOMOTIVE_PARTS", "pcs", 10,
     ["ISO9001"], None, 1.0),
    ("PMP-IMP-FC200", "Impeler pompa sentrifugal besi cor FC200", "Centrifugal pump impeller, grey iron FC200", "PUMP_PARTS",
     "pcs", 20, ["ISO9001"], None, 2.5),
    ("KPL-BOLDER-FCD450", "Bolder tambat kapal besi cor nodular FCD450", "Ship's mooring bollard, ductile iron FCD450",
     "SHIP_PARTS", "set", 5, ["ISO9001"], None, 1.0),
    ("KA-KLEM-REL", "Klem penambat rel besi cor nodular", "Rail fastening clamp, ductile iron", "RAILWAY_PARTS", "pcs", 100,
     ["ISO9001"], 25.0, 2.5),
    ("MSN-RUMAH-GIR", "Rumah gir mesin pabrik besi cor FC250", "Gearbox housing for factory machinery, grey iron FC250",
     "MACHINE_PARTS", "pcs", 10, [], None, 2.5),
)  # fmt: skip


def upgrade() -> None:
    items = op.create_table(
        "items",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name_id", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("product_family", sa.String(length=40), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("min_lot", sa.Integer(), nullable=False),
        sa.Column("required_certificates", sa.JSON(), nullable=False),
        sa.Column("min_tkdn_percent", sa.Float(), nullable=True),
        sa.Column("inspection_level", sa.String(length=4), nullable=False),
        sa.Column("aql", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("published_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("announced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", "version"),
    )
    now = datetime.now(UTC)
    # Not yet announced: the service publishes each of these once when it starts, so orders and capacity learn them.
    op.bulk_insert(
        items,
        [
            {"code": code, "version": 1, "name_id": name_id, "name_en": name_en, "product_family": family, "unit": unit,
             "min_lot": min_lot, "required_certificates": certificates, "min_tkdn_percent": tkdn, "inspection_level": "II",
             "aql": aql, "retired": False, "published_at": now, "announced": False}
            for code, name_id, name_en, family, unit, min_lot, certificates, tkdn, aql in SEED
        ],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("items")
