"""retries within a run

`endpoints.retry_max_attempts` and `retry_backoff_ms` hold an endpoint's retry policy (1 attempt: no retry, the value
every existing endpoint gets); `runs.attempts` lists a retried run's HTTP attempts as JSON (NULL for a run of one).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("retry_max_attempts", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("retry_backoff_ms", sa.BigInteger(), nullable=False, server_default="1000"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("attempts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("attempts")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("retry_backoff_ms")
        batch.drop_column("retry_max_attempts")
