"""outbox rows leave once sent

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    # The relay deletes a row once the broker acked it: the topic keeps the event, the outbox only what is still to
    # send. Marking rows sent rewrote each whole row and three index entries, most of an event's write-ahead log.
    op.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unsent", postgresql_where=UNSENT, sqlite_where=UNSENT)
        batch_op.drop_index("ix_outbox_sent_at")
        batch_op.drop_column("sent_at")


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", shared.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_sent_at", ["sent_at"], unique=False)
        batch_op.create_index("ix_outbox_unsent", ["seq"], unique=False, postgresql_where=UNSENT, sqlite_where=UNSENT)
