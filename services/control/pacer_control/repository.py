"""All of the control plane's SQL: tenants and keys, jobs, endpoints, runs, audit, claims and results.

Every public method is one transaction. Mutations take a `change` callback that runs on the locked row
inside that transaction, so the domain rules (validation, governor re-plan) and the write are atomic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session, sessionmaker

from pacer_common.errors import NotFound
from pacer_common.governor import Source
from pacer_common.ids import new_run_id
from pacer_control import schedule
from pacer_control.models import ApiKey, AuditRecord, Endpoint, Job, Run, Tenant, UtcDateTime

T = TypeVar("T")

JOB_ACTIVE = "active"
JOB_ARCHIVED = "archived"
RUN_RUNNING = "RUNNING"
RUN_SUCCESS = "SUCCESS"
FINAL_FAILURES = ("FAILURE", "TIMEOUT", "LOST", "BLOCKED")


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

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _tx(self) -> Iterator[Session]:
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

    def insert_job(self, job: Job, audit: Audit) -> None:
        with self._tx() as s:
            s.add(job)
            s.flush()
            self._audit(s, job.tenant_id, audit, job.id, job.created_at)

    @staticmethod
    def _locked_job(s: Session, tenant_id: str, job_id: str) -> Job:
        query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
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
        self, tenant_id: str, job_id: str, build: Callable[[Job], Endpoint], audit: Audit, now: datetime
    ) -> Endpoint:
        """Lock the job, let `build` check it and make the endpoint, insert and audit."""
        with self._tx() as s:
            job = self._locked_job(s, tenant_id, job_id)
            endpoint = build(job)
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
                select(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id).with_for_update()
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
        """Lease up to `limit` endpoints due within the horizon and create a RUNNING run for each."""
        due_by = now + timedelta(milliseconds=horizon_ms)
        with self._tx() as s:
            query = (
                select(Endpoint)
                .where(Endpoint.next_run_at <= due_by, Endpoint.lease_run_id.is_(None))
                .order_by(Endpoint.next_run_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            return [self._claim(s, endpoint, lease_grace_ms) for endpoint in s.scalars(query)]

    @staticmethod
    def _claim(s: Session, endpoint: Endpoint, lease_grace_ms: int) -> ClaimedRun:
        scheduled_for = endpoint.next_run_at
        assert scheduled_for is not None
        run_id = new_run_id()
        lease = scheduled_for + timedelta(milliseconds=endpoint.timeout_ms + lease_grace_ms)
        s.add(
            Run(
                id=run_id,
                tenant_id=endpoint.tenant_id,
                job_id=endpoint.job_id,
                endpoint_id=endpoint.id,
                status=RUN_RUNNING,
                source=endpoint.next_run_source,
                attempt=endpoint.failure_count + 1,
                scheduled_for=scheduled_for,
                lease_expires_at=lease,
            )
        )
        endpoint.lease_run_id, endpoint.lease_expires_at = run_id, lease
        endpoint.anchor_at = scheduled_for
        endpoint.last_started_at = scheduled_for
        if endpoint.oneshot_at is not None and endpoint.oneshot_at <= scheduled_for:
            schedule.clear_one_shot(endpoint)  # this run is the one the one-shot asked for
        return ClaimedRun(
            run_id=run_id,
            endpoint_id=endpoint.id,
            tenant_id=endpoint.tenant_id,
            scheduled_for=scheduled_for,
            lease_expires_at=lease,
            url=endpoint.url,
            method=endpoint.method,
            headers=dict(endpoint.headers),
            body=endpoint.body,
            timeout_ms=endpoint.timeout_ms,
        )

    def record_results(self, results: Sequence[RunResult], now: datetime) -> tuple[int, int]:
        """Store a batch of outcomes; only a result that still holds its lease moves the schedule.

        Returns (applied, stale): results that settled their run, and results recorded without effect on the
        schedule because the run was already settled (LOST) or is unknown.
        """
        applied = 0
        with self._tx() as s:
            for result in results:
                run = s.get(Run, result.run_id, with_for_update=True)
                if run is None:
                    continue
                if run.status != RUN_RUNNING:
                    _store_late_outcome(run, result)
                    continue
                _store_outcome(run, result)
                self._settle(s, run, result.status, result.started_at, now)
                applied += 1
        return applied, len(results) - applied

    def extend_leases(self, run_ids: Sequence[str], until: datetime) -> list[str]:
        """Move the lease of each RUNNING run (and its endpoint) to `until`; returns the runs extended."""
        with self._tx() as s:
            runs = list(s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == RUN_RUNNING)))
            for run in runs:
                run.lease_expires_at = until
            extended = [run.id for run in runs]
            s.execute(update(Endpoint).where(Endpoint.lease_run_id.in_(extended)).values(lease_expires_at=until))
            return extended

    def reap_expired(self, now: datetime, limit: int) -> int:
        """Mark RUNNING runs whose lease has expired as LOST and re-plan their endpoints; returns how many."""
        with self._tx() as s:
            query = (
                select(Run)
                .where(Run.status == RUN_RUNNING, Run.lease_expires_at < now)
                .order_by(Run.lease_expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            runs = list(s.scalars(query))
            for run in runs:
                run.status, run.finished_at, run.error_message = "LOST", now, "lease expired before a result arrived"
                self._settle(s, run, "LOST", None, now)
            return len(runs)

    @staticmethod
    def _settle(s: Session, run: Run, status: str, started_at: datetime | None, now: datetime) -> None:
        endpoint = s.get(Endpoint, run.endpoint_id, with_for_update=True)
        if endpoint is None or endpoint.lease_run_id != run.id:
            return  # fenced: another run holds the endpoint now
        endpoint.lease_run_id = endpoint.lease_expires_at = None
        endpoint.failure_count = 0 if status == RUN_SUCCESS else endpoint.failure_count + 1
        endpoint.last_status = status
        if started_at is not None:
            endpoint.last_started_at = started_at
        job = s.get_one(Job, endpoint.job_id)
        schedule.replan(endpoint, now, live=endpoint.deleted_at is None and job.status == JOB_ACTIVE)


def _store_outcome(run: Run, result: RunResult) -> None:
    run.status = result.status
    run.started_at = result.started_at
    run.finished_at = result.finished_at
    run.duration_ms = result.duration_ms
    run.http_status = result.http_status
    run.error_message = result.error_message
    run.response_body = result.response_body
    run.response_truncated = result.response_truncated


def _store_late_outcome(run: Run, result: RunResult) -> None:
    """Keep what a result that came after its run was settled (LOST) says, without changing the settled status."""
    run.started_at = run.started_at or result.started_at
    run.duration_ms = result.duration_ms
    run.http_status = result.http_status
    run.response_body = result.response_body
    run.response_truncated = result.response_truncated
    late = f"result {result.status} arrived after the lease expired"
    run.error_message = f"{run.error_message}; {late}" if run.error_message else late
