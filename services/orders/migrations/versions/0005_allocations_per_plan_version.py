"""allocations keyed by allocation and plan version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:10:00
"""

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("allocations_pkey", "allocations", type_="primary")
        op.create_primary_key("allocations_pkey", "allocations", ["allocation_id", "plan_version"])
    else:
        # SQLite cannot alter a primary key: the batch copies the table into the new shape. SQLAlchemy warns
        # that the copy's key differs from the reflected one, which is the point of this migration.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=sa.exc.SAWarning, message=".*primary_key=True, not matching.*")
            with op.batch_alter_table("allocations", recreate="always") as batch_op:
                batch_op.create_primary_key("pk_allocations", ["allocation_id", "plan_version"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("allocations_pkey", "allocations", type_="primary")
        op.create_primary_key("allocations_pkey", "allocations", ["allocation_id"])
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=sa.exc.SAWarning, message=".*primary_key=True, not matching.*")
            with op.batch_alter_table("allocations", recreate="always") as batch_op:
                batch_op.create_primary_key("pk_allocations", ["allocation_id"])
