"""endpoint grid slots and missed slots

`next_slot_at` is the grid time the next run stands for (a run coalescing missed interval slots keeps the endpoint's
phase); `missed_slots` and `last_missed_at` record the slots that passed without a run. Existing rows start with no
missed slots and no slot time (their next claim anchors on the run's own time, as before).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("next_slot_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("missed_slots", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_missed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("last_missed_at")
        batch.drop_column("missed_slots")
        batch.drop_column("next_slot_at")
