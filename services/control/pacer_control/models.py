"""The control plane's tables as typed SQLAlchemy models; Alembic migrations must match them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from pacer_common.runs import RunStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RunStatusColumn(TypeDecorator[RunStatus]):
    """A run status stored as its word (`SUCCESS`, ...), read back as the RunStatus enum."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: RunStatus | None, dialect: Dialect) -> str | None:
        return None if value is None else RunStatus(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> RunStatus | None:
        return None if value is None else RunStatus(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON(), int: Integer()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = (
        # The claim path: due endpoints without a live lease, in time order.
        Index(
            "ix_endpoints_due",
            "next_run_at",
            postgresql_where=text("lease_run_id IS NULL AND next_run_at IS NOT NULL"),
            sqlite_where=text("lease_run_id IS NULL AND next_run_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The URL as shown: a password in it is masked; the password and the headers are sealed in `secrets`.
    url: Mapped[str] = mapped_column(String(2048))
    method: Mapped[str] = mapped_column(String(8))
    secrets: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    cron_expression: Mapped[str | None] = mapped_column(String(200))
    cron_timezone: Mapped[str] = mapped_column(String(64), default="")
    interval_ms: Mapped[int | None] = mapped_column(BigInteger)
    min_interval_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    max_interval_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    timeout_ms: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    # Schedule state, the governor's inputs and output.
    anchor_at: Mapped[datetime]
    last_started_at: Mapped[datetime | None]
    last_status: Mapped[RunStatus | None] = mapped_column(RunStatusColumn())
    failure_count: Mapped[int] = mapped_column(default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_until: Mapped[datetime | None]
    hint_interval_ms: Mapped[int | None] = mapped_column(BigInteger)
    hint_expires_at: Mapped[datetime | None]
    oneshot_at: Mapped[datetime | None]
    oneshot_expires_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]
    next_run_source: Mapped[str] = mapped_column(String(24))
    # The grid time the next run stands for, which becomes the anchor when it is claimed: next_run_at, except for a
    # run that coalesces missed interval slots (the latest grid point before it). NULL on rows planned before 0005.
    next_slot_at: Mapped[datetime | None]
    # Slots that passed without a run since the endpoint was created (coalesced after an outage or an overrun), and
    # the scheduled time of the last run that coalesced some.
    missed_slots: Mapped[int] = mapped_column(BigInteger, default=0)
    last_missed_at: Mapped[datetime | None]
    # The run in flight, if any: its id fences results, its expiry lets the reaper find it.
    lease_run_id: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None]
    # The endpoint's rules as JSON (see pacer_common.policies), NULL when it has none.
    policies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON())
    jitter_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whether requests are signed; the signing secrets are sealed in `secrets` with the headers.
    signed: Mapped[bool] = mapped_column(Boolean, default=False)
    previous_secret_expires_at: Mapped[datetime | None]
    # Retries within a run (pacer_common.retries): attempts per run (1: none) and the wait before the second.
    retry_max_attempts: Mapped[int] = mapped_column(default=1)
    retry_backoff_ms: Mapped[int] = mapped_column(BigInteger, default=1000)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_tenant_scheduled", "tenant_id", "scheduled_for"),
        # An endpoint's history, newest first; on PostgreSQL it carries what SummarizeEndpointHealth and the ListRuns
        # status filter read, so they scan the index alone instead of one heap page per run.
        Index(
            "ix_runs_endpoint_history",
            "endpoint_id",
            "scheduled_for",
            postgresql_include=["status", "finished_at", "duration_ms"],
        ),
        Index("ix_runs_job_scheduled", "job_id", "scheduled_for"),
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        Index("ix_runs_session", "session_id", "claim_id", postgresql_where=text("status = 'RUNNING'")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"))
    status: Mapped[RunStatus] = mapped_column(RunStatusColumn())
    source: Mapped[str] = mapped_column(String(24))
    attempt: Mapped[int]
    scheduled_for: Mapped[datetime]
    lease_expires_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    http_status: Mapped[int] = mapped_column(default=0)
    error_message: Mapped[str] = mapped_column(Text, default="")
    response_body: Mapped[str] = mapped_column(Text, default="")
    response_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Each HTTP attempt of a retried run as JSON (pacer_control.attempts), NULL for a run of one attempt.
    attempts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON())
    # The scheduler session that claimed the run, and whether an executor said it holds it (begun, result due).
    session_id: Mapped[str | None] = mapped_column(String(64))
    claim_id: Mapped[str | None] = mapped_column(String(64))
    held: Mapped[bool] = mapped_column(Boolean, default=False)


class SchedulerSession(Base):
    """A scheduler's lease on the runs it claimed: renewed by heartbeats, ended when they stop."""

    __tablename__ = "scheduler_sessions"
    __table_args__ = (Index("ix_scheduler_sessions_open", "expires_at", postgresql_where=text("ended_at IS NULL")),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scheduler_id: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_tenant_at", "tenant_id", "at"),
        Index("ix_audit_records_job", "tenant_id", "job_id", "id"),
        Index("ix_audit_records_target", "tenant_id", "target_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    # Who: "key:<label>", "policy:<rule>" or "admin"; "" on records written before 0007.
    actor: Mapped[str] = mapped_column(String(200), default="")
    # The job of the target (the job itself for a job), so a job's trail is one index range.
    job_id: Mapped[str | None] = mapped_column(String(40))


class PolicyFiring(Base):
    """A rule whose condition held on a run: what it did, or why it did nothing."""

    __tablename__ = "policy_firings"
    __table_args__ = (
        Index("ix_policy_firings_run", "run_id"),
        Index("ix_policy_firings_endpoint_at", "endpoint_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"))
    run_id: Mapped[str] = mapped_column(String(40))
    rule: Mapped[str] = mapped_column(String(64))
    # "FIRED", "SKIPPED_COOLDOWN" or "ERROR".
    outcome: Mapped[str] = mapped_column(String(24))
    effects: Mapped[list[str]] = mapped_column(JSON())
    error_message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class PolicyState(Base):
    """A rule's memory between runs: how many runs in a row its condition has held, and when it last fired."""

    __tablename__ = "policy_states"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    streak: Mapped[int] = mapped_column(default=0)
    last_fired_at: Mapped[datetime | None]


class TenantQuota(Base):
    """A tenant's own limits; a NULL column means the service default."""

    __tablename__ = "tenant_quotas"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    max_jobs: Mapped[int | None]
    max_endpoints: Mapped[int | None]
    min_interval_ms: Mapped[int | None] = mapped_column(BigInteger)
    rate_per_s: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None]
    # How many days its finished runs are kept (0: for ever), instead of PACER_RUN_RETENTION_DAYS.
    run_retention_days: Mapped[int | None]
    updated_at: Mapped[datetime]
