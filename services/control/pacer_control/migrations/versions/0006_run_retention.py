"""per-tenant run retention, and an endpoint history index that answers health summaries alone

`run_retention_days` on a tenant's quota row keeps its finished runs that many days instead of the service's
PACER_RUN_RETENTION_DAYS (NULL: the default; 0: for ever). The pruning walks `ix_runs_tenant_scheduled`, which
0001 made.

`ix_runs_endpoint_history` replaces `ix_runs_endpoint_scheduled` (same key); on PostgreSQL it includes the status,
finish time and duration, so SummarizeEndpointHealth and the ListRuns status filter of an endpoint read the index
only. It is built before the old one is dropped, inside the migration's transaction, which holds off writes to the
runs table while it builds (2 to 3 s per million runs on the bench machine). Not CONCURRENTLY: that waits for every
open transaction, including the other replicas' migrations queued on the migration lock. A large installation
builds it first, by hand, with CREATE INDEX CONCURRENTLY (docs/operations.md "Run history and retention"); IF NOT
EXISTS then keeps it.

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


HISTORY_INCLUDE = ["status", "finished_at", "duration_ms"]


def upgrade() -> None:
    with op.batch_alter_table("tenant_quotas") as batch:
        batch.add_column(sa.Column("run_retention_days", sa.Integer(), nullable=True))
    op.create_index(
        "ix_runs_endpoint_history",
        "runs",
        ["endpoint_id", "scheduled_for"],
        postgresql_include=HISTORY_INCLUDE,
        if_not_exists=True,
    )
    op.drop_index("ix_runs_endpoint_scheduled", table_name="runs", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_runs_endpoint_scheduled", "runs", ["endpoint_id", "scheduled_for"], if_not_exists=True)
    op.drop_index("ix_runs_endpoint_history", table_name="runs", if_exists=True)
    with op.batch_alter_table("tenant_quotas") as batch:
        batch.drop_column("run_retention_days")
