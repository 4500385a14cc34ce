"""webhook secrets rotated with a grace period; the delivery log keeps each attempt's duration

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 07:00:00

A rotated-out secret stays beside the new one until it expires, and messages are signed with both meanwhile.
The delivery log keeps how long the last attempt took instead of what the receiver answered.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("buyer_webhooks") as batch:
        batch.add_column(sa.Column("previous_secret", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("previous_secret_expires_at", UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("last_duration_ms", sa.Integer(), nullable=True))
    # Receivers' answers were kept in the error text; only the status stays.
    op.execute("UPDATE webhook_deliveries SET last_error = 'HTTP ' || last_status_code WHERE last_status_code IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("last_duration_ms")
    with op.batch_alter_table("buyer_webhooks") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret")
