"""buyers and their delivery sites as data, seeded with the buyers and sites orders knew

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 09:50:00

Every buyer code and site code a stored order may name is seeded, with the names orders used, so orders
received before the upgrade keep their buyer and their sites.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEEDED_AT = datetime(2026, 12, 7, tzinfo=UTC)
BUYERS = [
    ("KAI", "PT Kereta Api Indonesia (Persero)"),
    ("INKA", "PT Industri Kereta Api (Persero)"),
    ("TMMIN", "PT Toyota Motor Manufacturing Indonesia"),
]
# code, name, buyer, city, address (only where it is known)
SITES = [
    ("BY-YK", "Balai Yasa Yogyakarta", "KAI", "Yogyakarta", None),
    ("BY-MRI", "Balai Yasa Manggarai", "KAI", "Jakarta", None),
    ("BY-TGL", "Balai Yasa Tegal", "KAI", "Tegal", None),
    ("BY-SGU", "Balai Yasa Surabaya Gubeng", "KAI", "Surabaya", None),
    ("BY-KAC", "Balai Yasa Kiaracondong", "KAI", "Bandung", None),
    ("BY-CN", "Balai Yasa Cirebon Prujakan", "KAI", "Cirebon", None),
    ("BY-LT", "Balai Yasa Lahat", "KAI", "Lahat", None),
    ("BY-PUB", "Balai Yasa Pulubrayan", "KAI", "Medan", None),
    ("INKA-MN", "PT INKA Madiun", "INKA", "Madiun", "Jl. Yos Sudarso 71"),
    ("INKA-BWI", "PT INKA Banyuwangi", "INKA", "Banyuwangi", None),
    ("TMMIN-SNT", "PT TMMIN Sunter II, Jakarta", "TMMIN", "Jakarta", None),
]


def upgrade() -> None:
    buyers = op.create_table(
        "buyers",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=False),
        sa.Column("npwp", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    sites = op.create_table(
        "delivery_sites",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("buyer_code", sa.String(length=20), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["buyer_code"], ["buyers.code"]),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_delivery_sites_buyer_code", "delivery_sites", ["buyer_code"])
    op.bulk_insert(
        buyers,
        [{"code": code, "legal_name": name, "npwp": None, "active": True, "updated_at": SEEDED_AT} for code, name in BUYERS],
    )
    op.bulk_insert(
        sites,
        [
            {"code": code, "name": name, "buyer_code": buyer, "city": city, "address": address, "active": True,
             "updated_at": SEEDED_AT}
            for code, name, buyer, city, address in SITES
        ],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_delivery_sites_buyer_code", table_name="delivery_sites")
    op.drop_table("delivery_sites")
    op.drop_table("buyers")
