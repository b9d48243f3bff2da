"""All of the control plane's SQL: tenants and keys, jobs, endpoints, runs, audit, claims and results.

Every public method is one transaction. Mutations take a `change` callback that runs on the locked row
inside that transaction, so the domain rules (validation, governor re-plan) and the write are atomic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from pacer_common.errors import FailedPrecondition, NotFound, QuotaViolation, ResourceExhausted, shown
from pacer_common.governor import Plan, Source
from pacer_common.ids import new_run_id
from pacer_common.urls import with_password
from pacer_control import schedule
from pacer_control.models import (
    ApiKey,
    AuditRecord,
    Endpoint,
    Job,
    Run,
    SchedulerSession,
    Tenant,
    TenantQuota,
    UtcDateTime,
)
from pacer_control.sealing import EndpointSecrets, Keyring, SecretsError, key_parts

T = TypeVar("T")
log = logging.getLogger("pacer.control.repository")

JOB_ACTIVE = "active"
JOB_ARCHIVED = "archived"
RUN_RUNNING = "RUNNING"
RUN_SUCCESS = "SUCCESS"
FINAL_FAILURES = ("FAILURE", "TIMEOUT", "LOST", "BLOCKED")
QUOTA_FIELDS = ("max_jobs", "max_endpoints", "min_interval_ms", "rate_per_s", "burst")
# Why slots were missed (pacer_runs_missed_total{reason}): the run before them lasted longer than the step, or not.
MISSED_OVERRUN = "overrun"
MISSED_OUTAGE = "outage"


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
    missed_slots: int = 0
    last_missed_at: datetime | None = None


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
    """What a batch of results did: runs settled by it, by final status; results that settled nothing (stale: the run
    was already settled, or is unknown); and slots its re-plans found missed, by reason (MISSED_OVERRUN, ...)."""

    settled: Mapping[str, int]
    stale: int
    missed: Mapping[str, int] = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return sum(self.settled.values())


@dataclass(frozen=True)
class LostRun:
    """A run settled as LOST: it may have reached its target, and its outcome is unknown.

    `missed_slots`: the slots its endpoint's re-plan found missed (always for the reason `outage`).
    """

    run_id: str
    endpoint_id: str
    tenant_id: str
    missed_slots: int = 0


def missed_when_lost(lost: Sequence[LostRun]) -> dict[str, int]:
    """The slots found missed when `lost` were settled, by reason: all `outage` (Pacer lost the run)."""
    return {MISSED_OUTAGE: sum(run.missed_slots for run in lost)}


@dataclass(frozen=True)
class EndedSession:
    """A scheduler session ended because its heartbeats stopped; `released` runs went back to due."""

    session_id: str
    scheduler_id: str
    released: int


SESSION_RECORD = timedelta(days=1)
EXPIRED_MESSAGE = "lease expired before a result arrived; the call may have reached the target"
VANISHED_MESSAGE = "the executor running it vanished; the call may have reached the target"


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
                .values(next_run_at=None, next_run_source=Source.PAUSED.value, next_slot_at=None)
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
        """Counts and durations of the endpoint's runs that finished since `since`, its latest outcome, and the slots
        it has missed in its lifetime."""
        with self._tx() as s:
            query = select(Endpoint.missed_slots, Endpoint.last_missed_at).where(
                Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id
            )
            endpoint = s.execute(query).one_or_none()
            if endpoint is None:
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
                missed_slots=endpoint.missed_slots,
                last_missed_at=endpoint.last_missed_at,
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

    def claim_due(
        self,
        now: datetime,
        horizon_ms: int,
        limit: int,
        lease_grace_ms: int,
        session_id: str | None = None,
        claim_id: str | None = None,
    ) -> list[ClaimedRun]:
        """Lease up to `limit` endpoints due within the horizon and create a RUNNING run for each.

        The hot path: three statements in one transaction, Core rather than the ORM. `FOR UPDATE SKIP LOCKED`
        lets concurrent claimers on PostgreSQL take disjoint sets; SQLite serializes them. The runs belong to the
        scheduler session `session_id`, which must be open (FailedPrecondition otherwise): the session's row is
        read under a share lock, so a session cannot end while a claim into it commits.

        A claim sent again with the same `claim_id` (its answer was lost) gets the runs that claim took, those
        still running, instead of new ones.
        """
        if session_id is not None and claim_id:
            again = self._claimed_before(session_id, claim_id)
            if again is not None:
                return again
        due_by = now + timedelta(milliseconds=horizon_ms)
        query = (
            select(*(_ENDPOINTS.c[name] for name in _CLAIM_COLUMNS))
            .where(_ENDPOINTS.c.next_run_at <= due_by, _ENDPOINTS.c.lease_run_id.is_(None))
            .order_by(_ENDPOINTS.c.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        with self._engine.begin() as connection:
            if session_id is not None:
                _require_open_session(connection, session_id)
            rows = _within_bytes(connection.execute(query).all(), CLAIM_MAX_BYTES)
            if not rows:
                return []
            claims = [_claim_of(row, now, lease_grace_ms, self._keyring) for row in rows]
            connection.execute(
                insert(_RUNS),
                [_run_row(row, claim, session_id, claim_id) for row, claim in zip(rows, claims, strict=True)],
            )
            connection.execute(_LEASE_UPDATE, [_lease_row(row, claim) for row, claim in zip(rows, claims, strict=True)])
            sealed_shut = [claim for claim in claims if not claim.sendable]
            if sealed_shut:
                _fail_sealed_shut(connection, sealed_shut, now)
            return [claim for claim in claims if claim.sendable]

    def _claimed_before(self, session_id: str, claim_id: str) -> list[ClaimedRun] | None:
        """The running runs an earlier claim `claim_id` of the session took, None when there are none."""
        query = (
            select(
                _RUNS.c.id.label("run_id"),
                _RUNS.c.scheduled_for,
                _RUNS.c.lease_expires_at,
                *(_ENDPOINTS.c[name] for name in ("id", "tenant_id", "url", "method", "secrets", "body", "timeout_ms")),
            )
            .join(_ENDPOINTS, _ENDPOINTS.c.id == _RUNS.c.endpoint_id)
            .where(_RUNS.c.session_id == session_id, _RUNS.c.claim_id == claim_id, _RUNS.c.status == RUN_RUNNING)
            .order_by(_RUNS.c.scheduled_for)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_claimed_again(row, self._keyring) for row in rows] or None

    def record_results(self, results: Sequence[RunResult], now: datetime) -> Recorded:
        """Store a batch of outcomes in one transaction; only a result that still holds its lease moves the schedule.

        Idempotent: a result for a run already settled with a final status changes nothing (a scheduler retrying a
        report whose reply was lost sends the same result again), except that a result for a run settled LOST (its
        outcome was unknown) fills in the real outcome, noted as reported after the run was settled as lost; the
        schedule does not move again. Returns the runs the batch settled, by status; how many results were stale
        (settled nothing: the run was already settled, or is unknown); and the slots the re-plans found missed.
        """
        by_run = {result.run_id: result for result in results}
        query = (
            select(_RUNS.c.id, _RUNS.c.status, _RUNS.c.endpoint_id, _RUNS.c.error_message)
            .where(_RUNS.c.id.in_(by_run))
            .order_by(_RUNS.c.id)
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            runs = connection.execute(query).all()
            live = [run for run in runs if run.status == RUN_RUNNING]
            lost = [run for run in runs if run.status == RUN_LOST]
            outcomes = [_outcome_row(by_run[run.id]) for run in live]
            outcomes += [_found_after_lost_row(run, by_run[run.id]) for run in lost]
            if outcomes:
                connection.execute(_OUTCOME_UPDATE, outcomes)
            settled = [_settled_by(run, by_run[run.id]) for run in live]
            missed = _settle(connection, settled, now)
        by_reason = Counter[str]()
        for slots in missed.values():
            by_reason[slots.reason] += slots.count
        return Recorded(Counter(item.status for item in settled), len(results) - len(live), by_reason)

    def extend_leases(self, run_ids: Sequence[str], until: datetime) -> list[str]:
        """Move the lease of each RUNNING run (and its endpoint) to `until`; returns the runs extended."""
        with self._tx() as s:
            runs = list(s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == RUN_RUNNING)))
            for run in runs:
                run.lease_expires_at = until
            extended = [run.id for run in runs]
            s.execute(update(Endpoint).where(Endpoint.lease_run_id.in_(extended)).values(lease_expires_at=until))
            return extended

    # -- scheduler sessions: runs a dead scheduler never handed out go back to due at once -------------------------

    def heartbeat(self, session_id: str, scheduler_id: str, now: datetime, ttl: timedelta, *, closing: bool) -> None:
        """Open or renew a scheduler's session until `now + ttl`; `closing` ends it now and releases its runs.

        FailedPrecondition when the session was already ended: its runs were released, so whatever the scheduler
        still holds undispatched must be dropped.
        """
        renewal = {"heartbeat_at": now, "expires_at": now + ttl}
        with self._engine.begin() as connection:
            # Open it if new (a concurrent first heartbeat may open it too: then this one renews it), then lock it.
            opening = _insert_for(connection).values(
                id=session_id, scheduler_id=scheduler_id, started_at=now, **renewal
            )
            connection.execute(opening.on_conflict_do_nothing(index_elements=["id"]))
            session = connection.execute(
                select(_SESSIONS.c.ended_at).where(_SESSIONS.c.id == session_id).with_for_update()
            ).one()
            if session.ended_at is not None:
                raise FailedPrecondition(f"scheduler session {shown(session_id)} has ended; open a new one")
            connection.execute(update(_SESSIONS).where(_SESSIONS.c.id == session_id).values(**renewal))
            if closing:
                _end_session(connection, session_id, now)

    def end_expired_sessions(self, now: datetime, limit: int) -> list[EndedSession]:
        """End up to `limit` sessions whose scheduler stopped renewing them, releasing their runs; returns them."""
        query = (
            select(_SESSIONS.c.id, _SESSIONS.c.scheduler_id)
            .where(_SESSIONS.c.ended_at.is_(None), _SESSIONS.c.expires_at < now)
            .order_by(_SESSIONS.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as connection:
            sessions = connection.execute(query).all()
            ended = [EndedSession(row.id, row.scheduler_id, _end_session(connection, row.id, now)) for row in sessions]
            # Ended sessions are kept a day for the record, then forgotten: one row per scheduler start.
            connection.execute(_SESSIONS.delete().where(_SESSIONS.c.ended_at < now - SESSION_RECORD))
            return ended

    def release_unbegun(self, run_ids: Sequence[str]) -> int:
        """Put RUNNING runs a scheduler never handed to an executor back to due (see `_release`); returns how many."""
        if not run_ids:
            return 0
        query = (
            select(_RUNS.c.id)
            .where(_RUNS.c.id.in_(run_ids), _RUNS.c.status == RUN_RUNNING, _RUNS.c.held.is_(False))
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            unbegun = connection.execute(query).scalars().all()
            _release(connection, unbegun)
            return len(unbegun)

    def mark_held(self, run_ids: Sequence[str]) -> int:
        """Note that an executor holds these RUNNING runs (begun, result due): they are never released."""
        if not run_ids:
            return 0
        with self._engine.begin() as connection:
            done = connection.execute(
                update(_RUNS).where(_RUNS.c.id.in_(run_ids), _RUNS.c.status == RUN_RUNNING).values(held=True)
            )
            return int(getattr(done, "rowcount", 0) or 0)

    def settle_vanished(self, run_ids: Sequence[str], now: datetime) -> list[LostRun]:
        """Settle as LOST the RUNNING runs among `run_ids` that no executor holds: they were sent to an executor that
        vanished, so they may have reached their target and their outcome is unknown."""
        if not run_ids:
            return []
        query = (
            select(_RUNS.c.id, _RUNS.c.endpoint_id, _RUNS.c.tenant_id)
            .where(_RUNS.c.id.in_(run_ids), _RUNS.c.status == RUN_RUNNING, _RUNS.c.held.is_(False))
            .order_by(_RUNS.c.id)
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            return _settle_lost(connection, connection.execute(query).all(), now, VANISHED_MESSAGE)

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
            return _settle_lost(connection, connection.execute(query).all(), now, EXPIRED_MESSAGE)

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
_SESSIONS: Table = SchedulerSession.__table__  # type: ignore[assignment]
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
    "next_slot_at",
    "failure_count",
    "oneshot_at",
    "oneshot_expires_at",
)
# What settling a run changes on its endpoint: the lease, the failure count, the governor's inputs and output, and
# the slots its plan found missed.
_SETTLED_COLUMNS = (
    "failure_count",
    "last_status",
    "last_started_at",
    "lease_run_id",
    "lease_expires_at",
    "next_run_at",
    "next_run_source",
    "next_slot_at",
    "missed_slots",
    "last_missed_at",
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


def _settle_lost(connection: Connection, runs: Sequence[Any], now: datetime, message: str) -> list[LostRun]:
    """Settle RUNNING `runs` (id, endpoint_id, tenant_id) as LOST with `message`, re-planning their endpoints."""
    if not runs:
        return []
    connection.execute(
        update(_RUNS)
        .where(_RUNS.c.id.in_([run.id for run in runs]))
        .values(status=RUN_LOST, finished_at=now, error_message=message)
    )
    missed = _settle(connection, [_Settled(run.id, run.endpoint_id, RUN_LOST, None) for run in runs], now)
    return [
        LostRun(run.id, run.endpoint_id, run.tenant_id, missed[run.id].count if run.id in missed else 0) for run in runs
    ]


def _end_session(connection: Connection, session_id: str, now: datetime) -> int:
    """End a session and release its RUNNING runs no executor holds; returns how many were released.

    Such a run never began: no executor said it holds it, and the scheduler that claimed it is gone (or said it
    stops). It leaves no trace: its row is deleted and its endpoint's lease cleared, so the endpoint is due again at
    the same slot (`next_run_at` never moved) and the next claim runs it, with a new run id.
    """
    connection.execute(update(_SESSIONS).where(_SESSIONS.c.id == session_id).values(ended_at=now))
    released = (
        connection.execute(
            select(_RUNS.c.id)
            .where(_RUNS.c.session_id == session_id, _RUNS.c.status == RUN_RUNNING, _RUNS.c.held.is_(False))
            .with_for_update(key_share=True)
        )
        .scalars()
        .all()
    )
    _release(connection, released)
    return len(released)


def _release(connection: Connection, run_ids: Sequence[str]) -> None:
    """Undo the claims of runs that never began: their rows go, their endpoints' leases are cleared, and each endpoint
    is due again at the same slot (a claim never moves `next_run_at`)."""
    if not run_ids:
        return
    connection.execute(
        update(_ENDPOINTS)
        .where(_ENDPOINTS.c.lease_run_id.in_(run_ids))
        .values(lease_run_id=None, lease_expires_at=None)
    )
    connection.execute(_RUNS.delete().where(_RUNS.c.id.in_(run_ids)))


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


def _claim_of(row: Any, now: datetime, lease_grace_ms: int, keyring: Keyring) -> ClaimedRun:
    try:
        secrets, sendable = EndpointSecrets.open(keyring, row.id, row.secrets), True
    except SecretsError:
        secrets, sendable = EndpointSecrets(), False
    return ClaimedRun(
        run_id=new_run_id(),
        endpoint_id=row.id,
        tenant_id=row.tenant_id,
        scheduled_for=row.next_run_at,
        # From the claim when the run is overdue: a late run gets its whole lease too.
        lease_expires_at=max(now, row.next_run_at) + timedelta(milliseconds=row.timeout_ms + lease_grace_ms),
        url=with_password(row.url, secrets.password),
        method=row.method,
        headers=secrets.headers,
        body=row.body,
        timeout_ms=row.timeout_ms,
        sendable=sendable,
    )


def _insert_for(connection: Connection) -> Any:
    """An INSERT into the sessions table in the connection's dialect, which both backends extend with ON CONFLICT."""
    insert_of = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    return insert_of(_SESSIONS)


def _require_open_session(connection: Connection, session_id: str) -> None:
    query = select(_SESSIONS.c.ended_at).where(_SESSIONS.c.id == session_id).with_for_update(read=True)
    session = connection.execute(query).one_or_none()
    if session is None:
        raise FailedPrecondition(f"no scheduler session {shown(session_id)}: send a heartbeat to open it first")
    if session.ended_at is not None:
        raise FailedPrecondition(f"scheduler session {shown(session_id)} has ended; open a new one")


def _claimed_again(row: Any, keyring: Keyring) -> ClaimedRun:
    """A run of an earlier claim, handed out again to the scheduler that never got the answer."""
    secrets = EndpointSecrets.open(keyring, row.id, row.secrets)
    return ClaimedRun(
        run_id=row.run_id,
        endpoint_id=row.id,
        tenant_id=row.tenant_id,
        scheduled_for=row.scheduled_for,
        lease_expires_at=row.lease_expires_at,
        url=with_password(row.url, secrets.password),
        method=row.method,
        headers=secrets.headers,
        body=row.body,
        timeout_ms=row.timeout_ms,
    )


def _run_row(row: Any, claim: ClaimedRun, session_id: str | None, claim_id: str | None) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "claim_id": claim_id or None,
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
        # The slot the run stands for: its own time, or for a run coalescing missed interval slots the latest grid
        # point before it, so the endpoint keeps its phase. Rows planned before migration 0005 have none.
        "b_anchor_at": row.next_slot_at or claim.scheduled_for,
        "b_last_started_at": claim.scheduled_for,
        "b_oneshot_at": None if consumed else row.oneshot_at,
        "b_oneshot_expires_at": None if consumed else row.oneshot_expires_at,
    }


def _outcome_row(result: RunResult) -> dict[str, Any]:
    return {"b_id": result.run_id, **{f"b_{name}": getattr(result, name) for name in _OUTCOME_COLUMNS}}


def _found_after_lost_row(run: Any, result: RunResult) -> dict[str, Any]:
    """The real outcome of a run settled LOST, which replaces the unknown one; the error message says it came late."""
    note = "reported after the run had been settled as LOST"
    if run.error_message:
        note = f"{note} ({run.error_message})"
    message = f"{result.error_message}; {note}" if result.error_message else note
    return {**_outcome_row(result), "b_error_message": message}


@dataclass(frozen=True)
class _Settled:
    run_id: str
    endpoint_id: str
    status: str
    started_at: datetime | None
    duration_ms: int | None = None  # None when the run's outcome is unknown (LOST) or it never ran


def _settled_by(run: Any, result: RunResult) -> _Settled:
    return _Settled(run.id, run.endpoint_id, result.status, result.started_at, result.duration_ms)


@dataclass(frozen=True)
class _Missed:
    """Slots an endpoint's re-plan found missed when one of its runs settled, and why."""

    count: int
    reason: str


def _settle(connection: Connection, settled: Sequence[_Settled], now: datetime) -> dict[str, _Missed]:
    """Release the leases of settled runs, count failures and re-plan each endpoint with the governor.

    Returns, by run id, the slots each re-plan found missed (and records them on the endpoint).
    """
    if not settled:
        return {}
    by_endpoint = {item.endpoint_id: item for item in settled}
    query = (
        select(_ENDPOINTS, _JOBS.c.status.label("job_status"))
        .join(_JOBS, _JOBS.c.id == _ENDPOINTS.c.job_id)
        .where(_ENDPOINTS.c.id.in_(by_endpoint))
        .order_by(_ENDPOINTS.c.id)
        .with_for_update(of=_ENDPOINTS, key_share=True)
    )
    changes = []
    missed: dict[str, _Missed] = {}
    for row in connection.execute(query):
        item = by_endpoint[row.id]
        if row.lease_run_id != item.run_id:
            continue  # fenced: another run holds the endpoint now
        endpoint, plan = _settled_endpoint(row, item, now)
        if plan.missed:
            endpoint.missed_slots += plan.missed
            endpoint.last_missed_at = plan.next_run_at
            missed[item.run_id] = _Missed(plan.missed, _miss_reason(item, plan))
        changes.append({"b_id": endpoint.id, **{f"b_{name}": getattr(endpoint, name) for name in _SETTLED_COLUMNS}})
    if changes:
        connection.execute(_SETTLE_UPDATE, changes)
    return missed


def _settled_endpoint(row: Any, item: _Settled, now: datetime) -> tuple[Endpoint, Plan]:
    endpoint = Endpoint(**{column.key: row._mapping[column] for column in _ENDPOINTS.columns})
    endpoint.lease_run_id = endpoint.lease_expires_at = None
    endpoint.failure_count = 0 if item.status == RUN_SUCCESS else endpoint.failure_count + 1
    endpoint.last_status = item.status
    if item.started_at is not None:
        endpoint.last_started_at = item.started_at
    plan = schedule.replan(endpoint, now, live=endpoint.deleted_at is None and row.job_status == JOB_ACTIVE)
    return endpoint, plan


def _miss_reason(item: _Settled, plan: Plan) -> str:
    """`overrun` when the settled run lasted longer than the step between slots: the endpoint is slower than its
    cadence. `outage` otherwise: Pacer could not keep up (late dispatch, delayed results, a lost run)."""
    if item.duration_ms is not None and plan.step is not None and timedelta(milliseconds=item.duration_ms) > plan.step:
        return MISSED_OVERRUN
    return MISSED_OUTAGE
