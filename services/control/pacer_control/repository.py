"""All of the control plane's SQL: tenants and keys, jobs, endpoints, runs, audit, claims and results.

Every public method is one transaction. Mutations take a `change` callback that runs on the locked row
inside that transaction, so the domain rules (validation, governor re-plan) and the write are atomic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from pacer_common.errors import NotFound, QuotaViolation, ResourceExhausted
from pacer_common.governor import Source
from pacer_common.ids import new_run_id
from pacer_common.urls import with_password
from pacer_control import schedule
from pacer_control.models import ApiKey, AuditRecord, Endpoint, Job, Run, Tenant, TenantQuota, UtcDateTime
from pacer_control.sealing import EndpointSecrets, Keyring, SecretsError, key_parts

T = TypeVar("T")
log = logging.getLogger("pacer.control.repository")

JOB_ACTIVE = "active"
JOB_ARCHIVED = "archived"
RUN_RUNNING = "RUNNING"
RUN_SUCCESS = "SUCCESS"
FINAL_FAILURES = ("FAILURE", "TIMEOUT", "LOST", "BLOCKED")
QUOTA_FIELDS = ("max_jobs", "max_endpoints", "min_interval_ms", "rate_per_s", "burst")


def quota_exceeded(
    tenant_id: str, limit: str, description: str, retry_after_s: float | None = None
) -> ResourceExhausted:
    """RESOURCE_EXHAUSTED naming the tenant's limit (a QuotaFailure detail), with RetryInfo when it passes."""
    violation = QuotaViolation(f"tenant:{tenant_id}/{limit}", description)
    return ResourceExhausted(f"quota exceeded: {description}", [violation], retry_after_s)


def _lock_tenant(s: Session, tenant_id: str) -> None:
    """Serialize a tenant's creations, so two concurrent requests cannot both pass a count limit."""
    s.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))


@dataclass(frozen=True)
class Audit:
    """What an audit record says: who did what to which object, and why."""

    action: str
    target_type: str
    reason: str = ""


@dataclass(frozen=True)
class JobView:
    job: Job
    endpoint_count: int
    failure_count: int
    last_run_at: datetime | None


@dataclass(frozen=True)
class HealthView:
    success_count: int
    failure_count: int
    avg_duration_ms: int
    p95_duration_ms: int
    last_run: Run | None
    failure_streak: int


@dataclass(frozen=True)
class ClaimedRun:
    """A run created by a claim, with what an executor needs to perform it."""

    run_id: str
    endpoint_id: str
    tenant_id: str
    scheduled_for: datetime
    lease_expires_at: datetime
    url: str
    method: str
    headers: dict[str, str]
    body: str
    timeout_ms: int
    # False when the endpoint's secrets do not open with the configured keys: the run fails at once instead.
    sendable: bool = True


@dataclass(frozen=True)
class Recorded:
    """What a batch of results did: runs settled by it, by final status, and results that came too late (stale)."""

    settled: Mapping[str, int]
    stale: int

    @property
    def applied(self) -> int:
        return sum(self.settled.values())


@dataclass(frozen=True)
class LostRun:
    """A run the reaper settled as LOST because its lease expired without a result."""

    run_id: str
    endpoint_id: str
    tenant_id: str


ENDPOINT_STATES = ("active", "paused", "deleted")


@dataclass(frozen=True)
class RunResult:
    """An executor's report on one run."""

    run_id: str
    status: str
    started_at: datetime | None
    finished_at: datetime
    duration_ms: int = 0
    http_status: int = 0
    error_message: str = ""
    response_body: str = ""
    response_truncated: bool = False


class Repository:
    """The control plane's database, behind methods named after what the domain needs."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        """`keyring` opens endpoint secrets for claims (and the actions seal them with it)."""
        self._engine = engine
        self._keyring = keyring
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        # Row locks in this module are FOR NO KEY UPDATE (key_share=True) on PostgreSQL: no update changes a key,
        # and a plain FOR UPDATE would conflict with the KEY SHARE locks that inserting a child row (a run, an
        # endpoint) takes on its parents, deadlocking claims against endpoint creation.
        with self._sessions() as session, session.begin():
            yield session

    # -- tenants and API keys -------------------------------------------------------------------------------------

    def create_tenant(self, tenant: Tenant) -> None:
        with self._tx() as s:
            s.add(tenant)

    def find_tenant(self, name: str) -> Tenant | None:
        with self._tx() as s:
            return s.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()

    def add_api_key(self, key: ApiKey) -> None:
        with self._tx() as s:
            s.add(key)

    def find_api_key(self, prefix: str) -> ApiKey | None:
        with self._tx() as s:
            return s.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()

    def revoke_api_key(self, prefix: str, now: datetime) -> bool:
        """Revoke the key with this prefix; False when there is no such live key."""
        with self._tx() as s:
            done = s.execute(
                update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
            )
            return bool(getattr(done, "rowcount", 0))

    def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        with self._tx() as s:
            return list(s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))

    def tenant_quota(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's own limits (None values mean the default), or None when it has none."""
        with self._tx() as s:
            row = s.get(TenantQuota, tenant_id)
            if row is None:
                return None
            return {name: getattr(row, name) for name in QUOTA_FIELDS}

    def set_tenant_quota(self, tenant_id: str, values: dict[str, Any], now: datetime) -> None:
        """Set some of the tenant's limits; a None value returns that limit to the default."""
        with self._tx() as s:
            row = s.get(TenantQuota, tenant_id, with_for_update={"key_share": True})
            if row is None:
                row = TenantQuota(tenant_id=tenant_id, updated_at=now)
                s.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = now

    # -- audit -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _audit(s: Session, tenant_id: str, audit: Audit, target_id: str, now: datetime) -> None:
        s.add(
            AuditRecord(
                tenant_id=tenant_id,
                action=audit.action,
                target_type=audit.target_type,
                target_id=target_id,
                reason=audit.reason,
                at=now,
            )
        )

    def audit_trail(self, tenant_id: str) -> list[AuditRecord]:
        with self._tx() as s:
            query = select(AuditRecord).where(AuditRecord.tenant_id == tenant_id).order_by(AuditRecord.id)
            return list(s.scalars(query))

    # -- jobs ------------------------------------------------------------------------------------------------------

    def insert_job(self, job: Job, audit: Audit, max_jobs: int) -> None:
        """Insert and audit the job, unless the tenant already has `max_jobs` active jobs."""
        with self._tx() as s:
            _lock_tenant(s, job.tenant_id)
            active = s.scalar(
                select(func.count()).select_from(Job).where(Job.tenant_id == job.tenant_id, Job.status == JOB_ACTIVE)
            )
            if (active or 0) >= max_jobs:
                raise quota_exceeded(job.tenant_id, "max_jobs", f"at most {max_jobs} active jobs")
            s.add(job)
            s.flush()
            self._audit(s, job.tenant_id, audit, job.id, job.created_at)

    @staticmethod
    def _locked_job(s: Session, tenant_id: str, job_id: str) -> Job:
        query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update(key_share=True)
        job = s.scalars(query).one_or_none()
        if job is None:
            raise NotFound("job", job_id)
        return job

    def change_job(self, tenant_id: str, job_id: str, change: Callable[[Job], T], audit: Audit, now: datetime) -> T:
        """Lock the tenant's job, apply `change` to it and audit, in one transaction."""
        with self._tx() as s:
            job = self._locked_job(s, tenant_id, job_id)
            result = change(job)
            self._audit(s, tenant_id, audit, job_id, now)
            return result

    def archive_job(self, tenant_id: str, job_id: str, audit: Audit, now: datetime) -> datetime:
        """Archive the job (once) and stop its endpoints; returns when it was archived."""
        with self._tx() as s:
            job = self._locked_job(s, tenant_id, job_id)
            if job.archived_at is not None:
                return job.archived_at
            job.status, job.archived_at, job.updated_at = JOB_ARCHIVED, now, now
            s.execute(
                update(Endpoint)
                .where(Endpoint.job_id == job_id)
                .values(next_run_at=None, next_run_source=Source.PAUSED.value)
            )
            self._audit(s, tenant_id, audit, job_id, now)
            return now

    def get_job(self, tenant_id: str, job_id: str) -> JobView:
        with self._tx() as s:
            job = s.scalars(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)).one_or_none()
            if job is None:
                raise NotFound("job", job_id)
            return self._job_views(s, [job])[0]

    def list_jobs(
        self, tenant_id: str, status: str | None, page_size: int, after: tuple[datetime, str] | None
    ) -> list[JobView]:
        """Up to `page_size` jobs, newest first, strictly after the (created_at, id) cursor."""
        with self._tx() as s:
            query = select(Job).where(Job.tenant_id == tenant_id)
            if status is not None:
                query = query.where(Job.status == status)
            if after is not None:
                created, job_id = after
                query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id)))
            jobs = list(s.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size)))
            return self._job_views(s, jobs)

    @staticmethod
    def _job_views(s: Session, jobs: Sequence[Job]) -> list[JobView]:
        ids = [j.id for j in jobs]
        stats = {
            row.job_id: row
            for row in s.execute(
                select(
                    Endpoint.job_id,
                    func.count(Endpoint.id).label("endpoints"),
                    func.coalesce(func.sum(Endpoint.failure_count), 0).label("failures"),
                    type_coerce(func.max(Endpoint.last_started_at), UtcDateTime()).label("last_run_at"),
                )
                .where(Endpoint.job_id.in_(ids), Endpoint.deleted_at.is_(None))
                .group_by(Endpoint.job_id)
            )
        }
        views = []
        for job in jobs:
            row = stats.get(job.id)
            if row is None:
                views.append(JobView(job, 0, 0, None))
            else:
                views.append(JobView(job, row.endpoints, int(row.failures), row.last_run_at))
        return views

    # -- endpoints -------------------------------------------------------------------------------------------------

    def insert_endpoint(
        self,
        tenant_id: str,
        job_id: str,
        build: Callable[[Job], Endpoint],
        audit: Audit,
        now: datetime,
        max_endpoints: int,
    ) -> Endpoint:
        """Lock the job, let `build` check it and make the endpoint, insert and audit, within `max_endpoints`."""
        with self._tx() as s:
            _lock_tenant(s, tenant_id)
            job = self._locked_job(s, tenant_id, job_id)
            endpoint = build(job)
            live = s.scalar(
                select(func.count())
                .select_from(Endpoint)
                .join(Job, Job.id == Endpoint.job_id)
                .where(Endpoint.tenant_id == tenant_id, Endpoint.deleted_at.is_(None), Job.status == JOB_ACTIVE)
            )
            if (live or 0) >= max_endpoints:
                raise quota_exceeded(tenant_id, "max_endpoints", f"at most {max_endpoints} endpoints")
            s.add(endpoint)
            s.flush()
            self._audit(s, tenant_id, audit, endpoint.id, now)
            return endpoint

    def change_endpoint(
        self,
        tenant_id: str,
        endpoint_id: str,
        change: Callable[[Endpoint, Job], T],
        audit: Audit,
        now: datetime,
    ) -> T:
        """Lock the tenant's endpoint, apply `change` (which sees its job) and audit, in one transaction."""
        with self._tx() as s:
            query = (
                select(Endpoint)
                .where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id)
                .with_for_update(key_share=True)
            )
            endpoint = s.scalars(query).one_or_none()
            if endpoint is None:
                raise NotFound("endpoint", endpoint_id)
            job = s.get_one(Job, endpoint.job_id)
            result = change(endpoint, job)
            self._audit(s, tenant_id, audit, endpoint_id, now)
            return result

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        with self._tx() as s:
            query = select(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id)
            endpoint = s.scalars(query).one_or_none()
            if endpoint is None:
                raise NotFound("endpoint", endpoint_id)
            return endpoint

    def list_job_endpoints(self, tenant_id: str, job_id: str) -> list[Endpoint]:
        with self._tx() as s:
            if s.scalars(select(Job.id).where(Job.id == job_id, Job.tenant_id == tenant_id)).one_or_none() is None:
                raise NotFound("job", job_id)
            query = (
                select(Endpoint)
                .where(Endpoint.job_id == job_id, Endpoint.deleted_at.is_(None))
                .order_by(Endpoint.created_at, Endpoint.id)
            )
            return list(s.scalars(query))

    # -- runs ------------------------------------------------------------------------------------------------------

    def list_runs(
        self,
        tenant_id: str,
        *,
        job_id: str | None,
        endpoint_id: str | None,
        statuses: Sequence[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Run], int]:
        """A page of the tenant's runs, newest scheduled first, and how many match in all."""
        conditions: list[ColumnElement[bool]] = [Run.tenant_id == tenant_id]
        if job_id is not None:
            conditions.append(Run.job_id == job_id)
        if endpoint_id is not None:
            conditions.append(Run.endpoint_id == endpoint_id)
        if statuses is not None:
            conditions.append(Run.status.in_(statuses))
        with self._tx() as s:
            total = s.scalar(select(func.count()).select_from(Run).where(*conditions)) or 0
            query = select(Run).where(*conditions).order_by(Run.scheduled_for.desc(), Run.id.desc()).limit(limit)
            return list(s.scalars(query.offset(offset))), total

    def get_run(self, tenant_id: str, run_id: str) -> Run:
        with self._tx() as s:
            run = s.scalars(select(Run).where(Run.id == run_id, Run.tenant_id == tenant_id)).one_or_none()
            if run is None:
                raise NotFound("run", run_id)
            return run

    def endpoint_health(self, tenant_id: str, endpoint_id: str, since: datetime) -> HealthView:
        """Counts and durations of the endpoint's runs that finished since `since`, plus its latest outcome."""
        with self._tx() as s:
            query = select(Endpoint.id).where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id)
            if s.scalars(query).one_or_none() is None:
                raise NotFound("endpoint", endpoint_id)
            finished = [Run.endpoint_id == endpoint_id, Run.finished_at.is_not(None)]
            in_window = [*finished, Run.finished_at >= since]
            counts = s.execute(
                select(
                    func.count().filter(Run.status == RUN_SUCCESS),
                    func.count().filter(Run.status.in_(FINAL_FAILURES)),
                    func.avg(Run.duration_ms),
                    func.count(),
                ).where(*in_window)
            ).one()
            p95 = 0
            if counts[3]:
                rank = (95 * counts[3] + 99) // 100 - 1  # nearest-rank percentile
                ranked = select(Run.duration_ms).where(*in_window).order_by(Run.duration_ms).offset(rank).limit(1)
                p95 = s.scalar(ranked) or 0
            last = s.scalars(select(Run).where(*finished).order_by(Run.finished_at.desc()).limit(1)).one_or_none()
            return HealthView(
                success_count=counts[0],
                failure_count=counts[1],
                avg_duration_ms=round(counts[2] or 0),
                p95_duration_ms=p95,
                last_run=last,
                failure_streak=self._failure_streak(s, endpoint_id),
            )

    @staticmethod
    def _failure_streak(s: Session, endpoint_id: str) -> int:
        last_success = s.scalar(
            select(func.max(Run.finished_at)).where(Run.endpoint_id == endpoint_id, Run.status == RUN_SUCCESS)
        )
        conditions = [Run.endpoint_id == endpoint_id, Run.status.in_(FINAL_FAILURES)]
        if last_success is not None:
            conditions.append(Run.finished_at > last_success)
        return s.scalar(select(func.count()).select_from(Run).where(*conditions)) or 0

    # -- the run pipeline: claims, results, lost runs --------------------------------------------------------------

    def claim_due(self, now: datetime, horizon_ms: int, limit: int, lease_grace_ms: int) -> list[ClaimedRun]:
        """Lease up to `limit` endpoints due within the horizon and create a RUNNING run for each.

        The hot path: three statements in one transaction, Core rather than the ORM. `FOR UPDATE SKIP LOCKED`
        lets concurrent claimers on PostgreSQL take disjoint sets; SQLite serializes them.
        """
        due_by = now + timedelta(milliseconds=horizon_ms)
        query = (
            select(*(_ENDPOINTS.c[name] for name in _CLAIM_COLUMNS))
            .where(_ENDPOINTS.c.next_run_at <= due_by, _ENDPOINTS.c.lease_run_id.is_(None))
            .order_by(_ENDPOINTS.c.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        with self._engine.begin() as connection:
            rows = _within_bytes(connection.execute(query).all(), CLAIM_MAX_BYTES)
            if not rows:
                return []
            claims = [_claim_of(row, lease_grace_ms, self._keyring) for row in rows]
            connection.execute(insert(_RUNS), [_run_row(row, claim) for row, claim in zip(rows, claims, strict=True)])
            connection.execute(_LEASE_UPDATE, [_lease_row(row, claim) for row, claim in zip(rows, claims, strict=True)])
            sealed_shut = [claim for claim in claims if not claim.sendable]
            if sealed_shut:
                _fail_sealed_shut(connection, sealed_shut, now)
            return [claim for claim in claims if claim.sendable]

    def record_results(self, results: Sequence[RunResult], now: datetime) -> Recorded:
        """Store a batch of outcomes in one transaction; only a result that still holds its lease moves the schedule.

        Returns the runs the batch settled, by status, and how many results were stale: recorded without effect on
        the schedule because the run was already settled (LOST) or is unknown.
        """
        by_run = {result.run_id: result for result in results}
        query = (
            select(_RUNS.c.id, _RUNS.c.status, _RUNS.c.endpoint_id, _RUNS.c.started_at, _RUNS.c.error_message)
            .where(_RUNS.c.id.in_(by_run))
            .order_by(_RUNS.c.id)
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            runs = connection.execute(query).all()
            live = [run for run in runs if run.status == RUN_RUNNING]
            late = [run for run in runs if run.status != RUN_RUNNING]
            if live:
                connection.execute(_OUTCOME_UPDATE, [_outcome_row(by_run[run.id]) for run in live])
            if late:
                connection.execute(_LATE_UPDATE, [_late_row(run, by_run[run.id]) for run in late])
            settled = [
                _Settled(run.id, run.endpoint_id, by_run[run.id].status, by_run[run.id].started_at) for run in live
            ]
            _settle(connection, settled, now)
        return Recorded(Counter(item.status for item in settled), len(results) - len(live))

    def extend_leases(self, run_ids: Sequence[str], until: datetime) -> list[str]:
        """Move the lease of each RUNNING run (and its endpoint) to `until`; returns the runs extended."""
        with self._tx() as s:
            runs = list(s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == RUN_RUNNING)))
            for run in runs:
                run.lease_expires_at = until
            extended = [run.id for run in runs]
            s.execute(update(Endpoint).where(Endpoint.lease_run_id.in_(extended)).values(lease_expires_at=until))
            return extended

    def reap_expired(self, now: datetime, limit: int) -> list[LostRun]:
        """Mark up to `limit` RUNNING runs whose lease has expired as LOST and re-plan their endpoints; returns them."""
        query = (
            select(_RUNS.c.id, _RUNS.c.endpoint_id, _RUNS.c.tenant_id)
            .where(_RUNS.c.status == RUN_RUNNING, _RUNS.c.lease_expires_at < now)
            .order_by(_RUNS.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        with self._engine.begin() as connection:
            runs = connection.execute(query).all()
            if runs:
                connection.execute(
                    update(_RUNS)
                    .where(_RUNS.c.id.in_([run.id for run in runs]))
                    .values(status=RUN_LOST, finished_at=now, error_message="lease expired before a result arrived")
                )
                _settle(connection, [_Settled(run.id, run.endpoint_id, RUN_LOST, None) for run in runs], now)
            return [LostRun(run.id, run.endpoint_id, run.tenant_id) for run in runs]

    # -- secrets at rest --------------------------------------------------------------------------------------------

    def reseal_secrets(self, batch: int = 500) -> dict[str, int]:
        """Seal every endpoint's secrets again under the keyring's first key, a batch per transaction.

        Returns how many sealed values there were under each key id before (the first key's count untouched).
        """
        found: Counter[str] = Counter()
        after = ""
        primary = self._keyring.primary_id
        while True:
            query = (
                select(_ENDPOINTS.c.id, _ENDPOINTS.c.secrets)
                .where(_ENDPOINTS.c.secrets.is_not(None), _ENDPOINTS.c.id > after)
                .order_by(_ENDPOINTS.c.id)
                .limit(batch)
                .with_for_update(key_share=True)
            )
            with self._engine.begin() as connection:
                rows = connection.execute(query).all()
                if not rows:
                    return dict(found)
                found.update(key_parts(row.secrets)[1] for row in rows)
                stale = [row for row in rows if key_parts(row.secrets)[1] != primary]
                if stale:
                    connection.execute(_RESEAL_UPDATE, [self._resealed(row.id, row.secrets) for row in stale])
                after = rows[-1].id

    def _resealed(self, endpoint_id: str, sealed: str) -> dict[str, Any]:
        return {
            "b_id": endpoint_id,
            "b_secrets": self._keyring.seal(self._keyring.open(sealed, endpoint_id), endpoint_id),
        }

    # -- operations: health and metrics -----------------------------------------------------------------------------

    def ping(self) -> None:
        """One round trip to the database (`SELECT 1`); raises SQLAlchemyError when it cannot be reached."""
        with self._engine.connect() as connection:
            connection.execute(select(1))

    def endpoint_counts(self) -> dict[str, int]:
        """Endpoints by state, every state present: `deleted`; `paused` (paused, or never firing again because
        their job is archived); `active` (the rest). One scan with one GROUP BY, for a metrics scrape."""
        state = case(
            (_ENDPOINTS.c.deleted_at.is_not(None), literal("deleted")),
            (or_(_ENDPOINTS.c.paused, _ENDPOINTS.c.next_run_at.is_(None)), literal("paused")),
            else_=literal("active"),
        ).label("state")
        # Grouped by the subquery's column: PostgreSQL would not match a CASE repeated with fresh bind parameters.
        states = select(state).subquery()
        query = select(states.c.state, func.count()).group_by(states.c.state)
        with self._engine.connect() as connection:
            counted = {str(name): int(count) for name, count in connection.execute(query)}
        return {name: counted.get(name, 0) for name in ENDPOINT_STATES}


# -- the hot path in Core: claims and results --------------------------------------------------------------------

_ENDPOINTS: Table = Endpoint.__table__  # type: ignore[assignment]
_RUNS: Table = Run.__table__  # type: ignore[assignment]
_JOBS: Table = Job.__table__  # type: ignore[assignment]
RUN_LOST = "LOST"
RUN_FAILURE = "FAILURE"
CLAIM_MAX_BYTES = 3 * 1024 * 1024  # under gRPC's default 4 MiB message limit, with room for the envelope
_CLAIM_COLUMNS = (
    "id",
    "tenant_id",
    "job_id",
    "url",
    "method",
    "secrets",
    "body",
    "timeout_ms",
    "next_run_at",
    "next_run_source",
    "failure_count",
    "oneshot_at",
    "oneshot_expires_at",
)
# What settling a run changes on its endpoint: the lease, the failure count and the governor's inputs and output.
_SETTLED_COLUMNS = (
    "failure_count",
    "last_status",
    "last_started_at",
    "lease_run_id",
    "lease_expires_at",
    "next_run_at",
    "next_run_source",
    "hint_interval_ms",
    "hint_expires_at",
    "oneshot_at",
    "oneshot_expires_at",
    "paused",
    "paused_until",
)
_OUTCOME_COLUMNS = (
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "http_status",
    "error_message",
    "response_body",
    "response_truncated",
)


def _by_id_update(table: Any, columns: Sequence[str]) -> Any:
    """An executemany UPDATE of `columns` by primary key; parameters are named `b_<column>` and `b_id`."""
    return (
        update(table).where(table.c.id == bindparam("b_id")).values({name: bindparam(f"b_{name}") for name in columns})
    )


_LEASE_UPDATE = _by_id_update(
    _ENDPOINTS, ("lease_run_id", "lease_expires_at", "anchor_at", "last_started_at", "oneshot_at", "oneshot_expires_at")
)
_OUTCOME_UPDATE = _by_id_update(_RUNS, _OUTCOME_COLUMNS)
_LATE_UPDATE = _by_id_update(
    _RUNS, ("started_at", "duration_ms", "http_status", "response_body", "response_truncated", "error_message")
)
_SETTLE_UPDATE = _by_id_update(_ENDPOINTS, _SETTLED_COLUMNS)
_RESEAL_UPDATE = _by_id_update(_ENDPOINTS, ("secrets",))


def _within_bytes(rows: Sequence[Any], budget: int) -> Sequence[Any]:
    """The longest prefix of due rows whose requests fit the budget (at least one): a claim must fit one message.

    Rows left out stay unclaimed and due; the next claim takes them.
    """
    used = 0
    for count, row in enumerate(rows):
        used += len(row.url) + len(row.body.encode()) + len(row.secrets or "")
        if used > budget and count > 0:
            return rows[:count]
    return rows


SEALED_SHUT_MESSAGE = (
    "the endpoint's secrets do not open with the configured secrets keys; set its headers and URL again"
)


def _fail_sealed_shut(connection: Connection, claims: Sequence[ClaimedRun], now: datetime) -> None:
    """Settle runs that cannot be sent as FAILURE now, instead of letting one bad row stop every claim."""
    for claim in claims:
        log.error(
            "endpoint secrets do not open", extra={"event": "secrets.unopenable", "endpoint_id": claim.endpoint_id}
        )
    connection.execute(
        update(_RUNS)
        .where(_RUNS.c.id.in_([claim.run_id for claim in claims]))
        .values(status=RUN_FAILURE, finished_at=now, error_message=SEALED_SHUT_MESSAGE)
    )
    _settle(connection, [_Settled(c.run_id, c.endpoint_id, RUN_FAILURE, None) for c in claims], now)


def _claim_of(row: Any, lease_grace_ms: int, keyring: Keyring) -> ClaimedRun:
    try:
        secrets, sendable = EndpointSecrets.open(keyring, row.id, row.secrets), True
    except SecretsError:
        secrets, sendable = EndpointSecrets(), False
    return ClaimedRun(
        run_id=new_run_id(),
        endpoint_id=row.id,
        tenant_id=row.tenant_id,
        scheduled_for=row.next_run_at,
        lease_expires_at=row.next_run_at + timedelta(milliseconds=row.timeout_ms + lease_grace_ms),
        url=with_password(row.url, secrets.password),
        method=row.method,
        headers=secrets.headers,
        body=row.body,
        timeout_ms=row.timeout_ms,
        sendable=sendable,
    )


def _run_row(row: Any, claim: ClaimedRun) -> dict[str, Any]:
    return {
        "id": claim.run_id,
        "tenant_id": row.tenant_id,
        "job_id": row.job_id,
        "endpoint_id": row.id,
        "status": RUN_RUNNING,
        "source": row.next_run_source,
        "attempt": row.failure_count + 1,
        "scheduled_for": claim.scheduled_for,
        "lease_expires_at": claim.lease_expires_at,
    }


def _lease_row(row: Any, claim: ClaimedRun) -> dict[str, Any]:
    # The run at or after a one-shot's time is the run the one-shot asked for: it consumes it.
    consumed = row.oneshot_at is not None and row.oneshot_at <= claim.scheduled_for
    return {
        "b_id": row.id,
        "b_lease_run_id": claim.run_id,
        "b_lease_expires_at": claim.lease_expires_at,
        "b_anchor_at": claim.scheduled_for,
        "b_last_started_at": claim.scheduled_for,
        "b_oneshot_at": None if consumed else row.oneshot_at,
        "b_oneshot_expires_at": None if consumed else row.oneshot_expires_at,
    }


def _outcome_row(result: RunResult) -> dict[str, Any]:
    return {"b_id": result.run_id, **{f"b_{name}": getattr(result, name) for name in _OUTCOME_COLUMNS}}


def _late_row(run: Any, result: RunResult) -> dict[str, Any]:
    """What a result that came after its run was settled (LOST) adds, without changing the settled status."""
    late = f"result {result.status} arrived after the lease expired"
    return {
        "b_id": run.id,
        "b_started_at": run.started_at or result.started_at,
        "b_duration_ms": result.duration_ms,
        "b_http_status": result.http_status,
        "b_response_body": result.response_body,
        "b_response_truncated": result.response_truncated,
        "b_error_message": f"{run.error_message}; {late}" if run.error_message else late,
    }


@dataclass(frozen=True)
class _Settled:
    run_id: str
    endpoint_id: str
    status: str
    started_at: datetime | None


def _settle(connection: Connection, settled: Sequence[_Settled], now: datetime) -> None:
    """Release the leases of settled runs, count failures and re-plan each endpoint with the governor."""
    if not settled:
        return
    by_endpoint = {item.endpoint_id: item for item in settled}
    query = (
        select(_ENDPOINTS, _JOBS.c.status.label("job_status"))
        .join(_JOBS, _JOBS.c.id == _ENDPOINTS.c.job_id)
        .where(_ENDPOINTS.c.id.in_(by_endpoint))
        .order_by(_ENDPOINTS.c.id)
        .with_for_update(of=_ENDPOINTS, key_share=True)
    )
    changes = []
    for row in connection.execute(query):
        item = by_endpoint[row.id]
        if row.lease_run_id != item.run_id:
            continue  # fenced: another run holds the endpoint now
        changes.append(_settled_endpoint(row, item, now))
    if changes:
        connection.execute(_SETTLE_UPDATE, changes)


def _settled_endpoint(row: Any, item: _Settled, now: datetime) -> dict[str, Any]:
    endpoint = Endpoint(**{column.key: row._mapping[column] for column in _ENDPOINTS.columns})
    endpoint.lease_run_id = endpoint.lease_expires_at = None
    endpoint.failure_count = 0 if item.status == RUN_SUCCESS else endpoint.failure_count + 1
    endpoint.last_status = item.status
    if item.started_at is not None:
        endpoint.last_started_at = item.started_at
    schedule.replan(endpoint, now, live=endpoint.deleted_at is None and row.job_status == JOB_ACTIVE)
    return {"b_id": endpoint.id, **{f"b_{name}": getattr(endpoint, name) for name in _SETTLED_COLUMNS}}
