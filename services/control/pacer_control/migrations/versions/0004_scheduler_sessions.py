"""scheduler sessions

A scheduler holds its claimed runs under a session kept alive by heartbeats; runs record the session and the claim
that took them, and whether an executor said it holds them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("scheduler_id", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_sessions")),
    )
    op.create_index(
        "ix_scheduler_sessions_open",
        "scheduler_sessions",
        ["expires_at"],
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("session_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("claim_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_runs_session", "runs", ["session_id", "claim_id"], postgresql_where=sa.text("status = 'RUNNING'")
    )


def downgrade() -> None:
    op.drop_index("ix_runs_session", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("held")
        batch.drop_column("claim_id")
        batch.drop_column("session_id")
    op.drop_index("ix_scheduler_sessions_open", table_name="scheduler_sessions")
    op.drop_table("scheduler_sessions")
