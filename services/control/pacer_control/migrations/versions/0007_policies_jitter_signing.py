"""endpoint policies, jitter and request signing; policy firings; audit actors

`endpoints.policies` holds the endpoint's rules as JSON (NULL: none), `jitter_ms` its jitter, `signed` whether its
requests are signed (the secrets themselves are sealed with the headers in `secrets`) and
`previous_secret_expires_at` when a rotated-out signing secret stops signing. `policy_firings` records each rule whose
condition held on a run (fired, skipped by cooldown, or failed); `policy_states` keeps each rule's streak and last
firing. Audit records gain the actor (`key:<label>`, `policy:<rule>`, `admin`) and the job of their target, so a
job's trail is one index range. Existing records get the actor "" (unknown) and no job.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("policies", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("jitter_ms", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("signed", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("actor", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("job_id", sa.String(40), nullable=True))
    op.create_index("ix_audit_records_job", "audit_records", ["tenant_id", "job_id", "id"])
    op.create_index("ix_audit_records_target", "audit_records", ["tenant_id", "target_id", "id"])
    op.create_table(
        "policy_firings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("endpoints.id"), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("effects", sa.JSON(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_policy_firings_run", "policy_firings", ["run_id"])
    op.create_index("ix_policy_firings_endpoint_at", "policy_firings", ["endpoint_id", "at"])
    op.create_table(
        "policy_states",
        sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("endpoints.id"), primary_key=True),
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("streak", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("policy_states")
    op.drop_index("ix_policy_firings_endpoint_at", table_name="policy_firings")
    op.drop_index("ix_policy_firings_run", table_name="policy_firings")
    op.drop_table("policy_firings")
    op.drop_index("ix_audit_records_target", table_name="audit_records")
    op.drop_index("ix_audit_records_job", table_name="audit_records")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("job_id")
        batch.drop_column("actor")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("signed")
        batch.drop_column("jitter_ms")
        batch.drop_column("policies")
