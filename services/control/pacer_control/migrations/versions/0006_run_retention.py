"""per-tenant run retention

`run_retention_days` on a tenant's quota row keeps its finished runs that many days instead of the service's
PACER_RUN_RETENTION_DAYS (NULL: the default; 0: for ever). The pruning walks `ix_runs_tenant_scheduled`, which
0001 made, so no new index is needed on the runs table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_quotas") as batch:
        batch.add_column(sa.Column("run_retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant_quotas") as batch:
        batch.drop_column("run_retention_days")
