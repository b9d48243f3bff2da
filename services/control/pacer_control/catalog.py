"""The tenants' objects behind the 17 public actions: tenants, API keys and quotas, jobs, endpoints, their runs as
read back, audit records, and endpoint secrets at rest.

Mutations take a `change` callback that runs on the locked row inside the transaction, so the domain rules
(validation, governor re-plan) and the write are atomic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pacer_common.errors import NotFound, QuotaViolation, ResourceExhausted
from pacer_common.governor import Source
from pacer_common.runs import FAILURES, RunStatus
from pacer_control.models import (
    ApiKey,
    AuditRecord,
    Endpoint,
    Job,
    PolicyFiring,
    Run,
    Tenant,
    TenantQuota,
    UtcDateTime,
)
from pacer_control.sealing import Keyring, key_parts
from pacer_control.store import (
    API_KEYS,
    ENDPOINTS,
    JOB_ACTIVE,
    JOB_ARCHIVED,
    JOBS,
    TENANTS,
    Store,
    by_id_row,
    by_id_update,
)

T = TypeVar("T")

# ListRuns counts matching runs only this far past the end of the page: an exact count of a history of millions
# of rows would cost more than the page itself. A total of offset + limit + TOTAL_LOOKAHEAD means "at least".
TOTAL_LOOKAHEAD: Final = 1000
# A run finishes at most its timeout (5 minutes at most) and the lease grace after its scheduled time, unless a
# control plane outage delayed its settling: the health window bounds the index scan by scheduled time with this
# much slack, and then counts the runs that finished in the window.
FINISH_SLACK: Final = timedelta(days=1)
QUOTA_FIELDS: Final = ("max_jobs", "max_endpoints", "min_interval_ms", "rate_per_s", "burst", "run_retention_days")
ENDPOINT_STATES: Final = ("active", "paused", "deleted")
_RESEAL_UPDATE = by_id_update(ENDPOINTS, ("secrets",))


def quota_exceeded(
    tenant_id: str, limit: str, description: str, retry_after_s: float | None = None
) -> ResourceExhausted:
    """RESOURCE_EXHAUSTED naming the tenant's limit (a QuotaFailure detail), with RetryInfo when it passes."""
    violation = QuotaViolation(f"tenant:{tenant_id}/{limit}", description)
    return ResourceExhausted(f"quota exceeded: {description}", [violation], retry_after_s)


def _lock_tenant(s: Session, tenant_id: str) -> None:
    """Serialize a tenant's creations, so two concurrent requests cannot both pass a count limit."""
    s.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))


def _of_endpoint(tenant_id: str, endpoint_id: str) -> list[ColumnElement[bool]]:
    """Runs of the tenant's endpoint: the endpoint row is checked once (its runs are its tenant's), so the endpoint
    history index answers the rest without a visit to each run's row."""
    owned = exists().where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id)
    return [Run.endpoint_id == endpoint_id, owned]


def _endpoint_page(
    s: Session, endpoint_id: str, conditions: Sequence[ColumnElement[bool]], limit: int, offset: int
) -> list[Run]:
    """A filtered page of one endpoint's runs: the matching scheduled times come from the endpoint history index
    alone (a rare status may lie thousands of runs apart), then only the page's runs are read. An endpoint has one
    run per scheduled time (docs/delivery.md)."""
    times = (
        select(Run.scheduled_for.label("at"))
        .where(*conditions)
        .order_by(Run.scheduled_for.desc())
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    query = (
        select(Run)
        .join(times, and_(Run.endpoint_id == endpoint_id, Run.scheduled_for == times.c.at))
        .where(*conditions)
        .order_by(Run.scheduled_for.desc(), Run.id.desc())
    )
    return list(s.scalars(query))


def _status_in(statuses: Sequence[str]) -> ColumnElement[bool]:
    """The ListRuns status filter. Only RUNNING runs are few: for them the status index (the reaper's) is the way in.
    Finished statuses are written so the database filters them on the rows the tenant, job or endpoint index walk
    yields: intersecting with every failed run of every tenant in that index costs more the longer the history."""
    words = [RunStatus(status).value for status in statuses]
    if words == [RunStatus.RUNNING.value]:
        return Run.status.in_(statuses)
    return type_coerce(Run.status, String).concat("").in_(words)


def _counted_up_to(s: Session, conditions: Sequence[ColumnElement[bool]], cap: int) -> int:
    """How many runs match `conditions`, counting no further than `cap`: the scan stops there."""
    matching = select(literal(1)).select_from(Run).where(*conditions).limit(cap).subquery()
    return s.scalar(select(func.count()).select_from(matching)) or 0


# What GetJob and ListJobs show of a job's live endpoints, aggregated over them.
_JOB_STATS: Final = (
    func.count(Endpoint.id).label("endpoints"),
    func.coalesce(func.sum(Endpoint.failure_count), 0).label("failures"),
    type_coerce(func.max(Endpoint.last_started_at), UtcDateTime()).label("last_run_at"),
)


@dataclass(frozen=True)
class Audit:
    """What an audit record says: who did what to which object, and why."""

    action: str
    target_type: str
    reason: str = ""
    # Who: "key:<label>" for an API key, "policy:<rule>" for a rule, "admin" for pacer-admin.
    actor: str = ""


@dataclass(frozen=True)
class JobView:
    job: Job
    endpoint_count: int
    failure_count: int
    last_run_at: datetime | None


class ListedEndpoint(NamedTuple):
    """An endpoint as ListJobEndpoints reads it: only the columns it shows (and what its digest is made of), as a
    plain row, which costs a fraction of a mapped object when a job has thousands."""

    id: str
    name: str
    url: str
    method: str
    body: str
    secrets: str | None
    cron_expression: str | None
    cron_timezone: str
    interval_ms: int | None
    min_interval_ms: int
    max_interval_ms: int
    timeout_ms: int
    next_run_at: datetime | None
    next_run_source: str
    last_started_at: datetime | None
    last_status: RunStatus | None
    failure_count: int
    paused: bool
    paused_until: datetime | None
    jitter_ms: int
    signed: bool
    previous_secret_expires_at: datetime | None
    policies: list[dict[str, Any]] | None
    hint_interval_ms: int | None
    hint_expires_at: datetime | None
    retry_max_attempts: int
    retry_backoff_ms: int


# The statements of the hot reads, built once (see Store._reading).
_LISTED: Final = (
    select(*(ENDPOINTS.c[name] for name in ListedEndpoint._fields))
    .where(
        ENDPOINTS.c.job_id == bindparam("job_id"),
        ENDPOINTS.c.tenant_id == bindparam("tenant_id"),
        ENDPOINTS.c.deleted_at.is_(None),
    )
    .order_by(ENDPOINTS.c.created_at, ENDPOINTS.c.id)
)
_JOB_OF: Final = select(JOBS.c.id).where(JOBS.c.id == bindparam("job_id"), JOBS.c.tenant_id == bindparam("tenant_id"))
_GET_JOB: Final = (
    select(*JOBS.c, *_JOB_STATS)
    .select_from(JOBS.outerjoin(ENDPOINTS, and_(ENDPOINTS.c.job_id == JOBS.c.id, ENDPOINTS.c.deleted_at.is_(None))))
    .where(JOBS.c.id == bindparam("job_id"), JOBS.c.tenant_id == bindparam("tenant_id"))
    .group_by(JOBS.c.id)
)
_API_KEY: Final = select(API_KEYS).where(API_KEYS.c.prefix == bindparam("prefix"))
# AddEndpointToJob's: the job's status, locking the job's and the tenant's rows (FOR NO KEY UPDATE: see Store._tx),
# then the tenant's endpoints that count against its quota (not deleted, in an active job).
_JOB_STATUS_LOCKING_TENANT: Final = (
    select(JOBS.c.status)
    .join(TENANTS, TENANTS.c.id == JOBS.c.tenant_id)
    .where(JOBS.c.id == bindparam("job_id"), JOBS.c.tenant_id == bindparam("tenant_id"))
    .with_for_update(key_share=True)
)
_LIVE_ENDPOINTS: Final = (
    select(func.count())
    .select_from(ENDPOINTS.join(JOBS, JOBS.c.id == ENDPOINTS.c.job_id))
    .where(
        ENDPOINTS.c.tenant_id == bindparam("tenant_id"),
        ENDPOINTS.c.deleted_at.is_(None),
        JOBS.c.status == JOB_ACTIVE,
    )
)


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
    policy_counts: tuple[PolicyCountView, ...] = ()


@dataclass(frozen=True)
class PolicyCountView:
    """One rule's outcomes in a window."""

    rule: str
    fired: int = 0
    skipped_cooldown: int = 0
    errors: int = 0


class Catalog(Store):
    """The tenants' objects, behind methods named after what the actions need."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        super().__init__(engine, keyring)
        self._revocation_listeners: list[Callable[[str], None]] = []

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
        with self._reading() as connection:
            row = connection.execute(_API_KEY, {"prefix": prefix}).one_or_none()
        return None if row is None else ApiKey(**row._asdict())

    def on_key_revoked(self, listener: Callable[[str], None]) -> None:
        """Have `listener(prefix)` called after each revocation this catalog commits (a cache of keys forgets it)."""
        self._revocation_listeners.append(listener)

    def revoke_api_key(self, prefix: str, now: datetime) -> bool:
        """Revoke the key with this prefix; False when there is no such live key."""
        with self._tx() as s:
            done = s.execute(
                update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
            )
        for listener in self._revocation_listeners:
            listener(prefix)
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
    def _audit(s: Session, tenant_id: str, audit: Audit, target_id: str, job_id: str, now: datetime) -> None:
        s.add(
            AuditRecord(
                tenant_id=tenant_id,
                action=audit.action,
                target_type=audit.target_type,
                target_id=target_id,
                job_id=job_id,
                actor=audit.actor,
                reason=audit.reason,
                at=now,
            )
        )

    def audit_records(
        self, tenant_id: str, job_id: str | None, endpoint_id: str | None, before_id: int | None, limit: int
    ) -> list[AuditRecord]:
        """Up to `limit` records of the tenant's job (with its endpoints') or endpoint, newest first, older than
        `before_id`; NotFound when the tenant has no such job or endpoint (deleted endpoints keep their trail)."""
        with self._tx() as s:
            if job_id is not None:
                if s.scalar(select(Job.id).where(Job.id == job_id, Job.tenant_id == tenant_id)) is None:
                    raise NotFound("job", job_id)
                query = select(AuditRecord).where(AuditRecord.tenant_id == tenant_id, AuditRecord.job_id == job_id)
            else:
                assert endpoint_id is not None
                owned = select(Endpoint.id).where(Endpoint.id == endpoint_id, Endpoint.tenant_id == tenant_id)
                if s.scalar(owned) is None:
                    raise NotFound("endpoint", endpoint_id)
                query = select(AuditRecord).where(
                    AuditRecord.tenant_id == tenant_id, AuditRecord.target_id == endpoint_id
                )
            if before_id is not None:
                query = query.where(AuditRecord.id < before_id)
            return list(s.scalars(query.order_by(AuditRecord.id.desc()).limit(limit)))

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
            self._audit(s, job.tenant_id, audit, job.id, job.id, job.created_at)

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
            self._audit(s, tenant_id, audit, job_id, job_id, now)
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
            self._audit(s, tenant_id, audit, job_id, job_id, now)
            return now

    def get_job(self, tenant_id: str, job_id: str) -> JobView:
        """The tenant's job with its endpoints' figures, in one statement."""
        with self._reading() as connection:
            row = connection.execute(_GET_JOB, {"job_id": job_id, "tenant_id": tenant_id}).one_or_none()
        if row is None:
            raise NotFound("job", job_id)
        job = Job(**{column.key: row._mapping[column] for column in JOBS.c})
        return JobView(job, row.endpoints, int(row.failures), row.last_run_at)

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
                select(Endpoint.job_id, *_JOB_STATS)
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
        self, endpoint: Endpoint, admit: Callable[[str], None], audit: Audit, now: datetime, max_endpoints: int
    ) -> None:
        """Insert and audit the endpoint if `admit` accepts its job's status, unless the tenant has `max_endpoints`.

        The tenant's creations are serialized by a lock on its row, held from the count to the commit only: the
        rows are inserted first (the count then includes this one; a job that does not exist fails the insert's
        foreign key), then the tenant's row and the job's are locked and the job's status read under the lock, so
        an ArchiveJob that committed meanwhile is seen. Anything refused rolls the insert back.
        """
        tenant_id, job_id = endpoint.tenant_id, endpoint.job_id
        with self._tx() as s:
            s.add(endpoint)
            self._audit(s, tenant_id, audit, endpoint.id, job_id, now)
            try:
                s.flush()
            except IntegrityError:
                raise NotFound("job", job_id) from None  # the only foreign key a caller can name: the job
            admit(self._job_status_locking_tenant(s, tenant_id, job_id))
            if (s.scalar(_LIVE_ENDPOINTS, {"tenant_id": tenant_id}) or 0) > max_endpoints:
                raise quota_exceeded(tenant_id, "max_endpoints", f"at most {max_endpoints} endpoints")

    @staticmethod
    def _job_status_locking_tenant(s: Session, tenant_id: str, job_id: str) -> str:
        status: str | None = s.scalar(_JOB_STATUS_LOCKING_TENANT, {"job_id": job_id, "tenant_id": tenant_id})
        if status is None:
            raise NotFound("job", job_id)
        return status

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
            self._audit(s, tenant_id, audit, endpoint_id, endpoint.job_id, now)
            return result

    def list_job_endpoints(self, tenant_id: str, job_id: str) -> list[ListedEndpoint]:
        """The live endpoints of the tenant's job, oldest first; NotFound when the tenant has no such job.

        One statement, without a transaction; a second one only when there is no endpoint, to tell an empty job
        from a missing one.
        """
        with self._reading() as connection:
            listed = [
                ListedEndpoint._make(row)
                for row in connection.execute(_LISTED, {"job_id": job_id, "tenant_id": tenant_id})
            ]
            if not listed and connection.execute(_JOB_OF, {"job_id": job_id, "tenant_id": tenant_id}).first() is None:
                raise NotFound("job", job_id)
        return listed

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
        """A page of the tenant's runs, newest scheduled first, and how many match: exactly when fewer than
        TOTAL_LOOKAHEAD runs match past the end of the page, else offset + limit + TOTAL_LOOKAHEAD ("at least")."""
        conditions = [Run.tenant_id == tenant_id] if endpoint_id is None else _of_endpoint(tenant_id, endpoint_id)
        if job_id is not None:
            conditions.append(Run.job_id == job_id)
        if statuses is not None:
            conditions.append(_status_in(statuses))
        newest = (Run.scheduled_for.desc(), Run.id.desc())
        with self._tx() as s:
            if endpoint_id is not None and statuses is not None and job_id is None:
                runs = _endpoint_page(s, endpoint_id, conditions, limit, offset)
            else:
                runs = list(s.scalars(select(Run).where(*conditions).order_by(*newest).limit(limit).offset(offset)))
            return runs, _counted_up_to(s, conditions, offset + limit + TOTAL_LOOKAHEAD)

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
            in_window = [*finished, Run.scheduled_for >= since - FINISH_SLACK, Run.finished_at >= since]
            counts = s.execute(
                select(
                    func.count().filter(Run.status == RunStatus.SUCCESS),
                    func.count().filter(Run.status.in_(FAILURES)),
                    func.avg(Run.duration_ms),
                    func.count(),
                ).where(*in_window)
            ).one()
            p95 = 0
            if counts[3]:
                rank = (95 * counts[3] + 99) // 100 - 1  # nearest-rank percentile
                ranked = select(Run.duration_ms).where(*in_window).order_by(Run.duration_ms).offset(rank).limit(1)
                p95 = s.scalar(ranked) or 0
            # An endpoint never has two runs in flight, so its latest scheduled finished run is its latest outcome.
            latest = select(Run).where(*finished).order_by(Run.scheduled_for.desc()).limit(1)
            last = s.scalars(latest).one_or_none()
            return HealthView(
                success_count=counts[0],
                failure_count=counts[1],
                avg_duration_ms=round(counts[2] or 0),
                p95_duration_ms=p95,
                last_run=last,
                failure_streak=self._failure_streak(s, endpoint_id),
                missed_slots=endpoint.missed_slots,
                last_missed_at=endpoint.last_missed_at,
                policy_counts=_policy_counts(s, endpoint_id, since),
            )

    def run_firings(self, tenant_id: str, run_id: str) -> list[PolicyFiring]:
        """The rules whose condition held on the run, in the order they were evaluated."""
        with self._tx() as s:
            query = select(PolicyFiring).where(PolicyFiring.run_id == run_id, PolicyFiring.tenant_id == tenant_id)
            return list(s.scalars(query.order_by(PolicyFiring.id)))

    @staticmethod
    def _failure_streak(s: Session, endpoint_id: str) -> int:
        """Non-successes after the endpoint's last success, found walking its runs from the newest (within the
        retention: a success pruned away no longer ends the streak)."""
        last_success = s.scalar(
            select(Run.scheduled_for)
            .where(Run.endpoint_id == endpoint_id, Run.status == RunStatus.SUCCESS)
            .order_by(Run.scheduled_for.desc())
            .limit(1)
        )
        conditions = [Run.endpoint_id == endpoint_id, _status_in(FAILURES)]
        if last_success is not None:
            conditions.append(Run.scheduled_for > last_success)
        return s.scalar(select(func.count()).select_from(Run).where(*conditions)) or 0

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
                select(ENDPOINTS.c.id, ENDPOINTS.c.secrets)
                .where(ENDPOINTS.c.secrets.is_not(None), ENDPOINTS.c.id > after)
                .order_by(ENDPOINTS.c.id)
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
        return by_id_row(
            endpoint_id, {"secrets": self._keyring.seal(self._keyring.open(sealed, endpoint_id), endpoint_id)}
        )

    # -- operations: metrics ---------------------------------------------------------------------------------------

    def endpoint_counts(self) -> dict[str, int]:
        """Endpoints by state, every state present: `deleted`; `paused` (paused, or never firing again because
        their job is archived); `active` (the rest). One scan with one GROUP BY, for a metrics scrape."""
        state = case(
            (ENDPOINTS.c.deleted_at.is_not(None), literal("deleted")),
            (or_(ENDPOINTS.c.paused, ENDPOINTS.c.next_run_at.is_(None)), literal("paused")),
            else_=literal("active"),
        ).label("state")
        # Grouped by the subquery's column: PostgreSQL would not match a CASE repeated with fresh bind parameters.
        states = select(state).subquery()
        query = select(states.c.state, func.count()).group_by(states.c.state)
        with self._engine.connect() as connection:
            counted = {str(name): int(count) for name, count in connection.execute(query)}
        return {name: counted.get(name, 0) for name in ENDPOINT_STATES}


def _policy_counts(s: Session, endpoint_id: str, since: datetime) -> tuple[PolicyCountView, ...]:
    """Outcomes of the endpoint's rules evaluated since `since`, per rule, by name."""
    query = (
        select(PolicyFiring.rule, PolicyFiring.outcome, func.count())
        .where(PolicyFiring.endpoint_id == endpoint_id, PolicyFiring.at >= since)
        .group_by(PolicyFiring.rule, PolicyFiring.outcome)
    )
    counts: dict[str, dict[str, int]] = {}
    for rule, outcome, count in s.execute(query):
        counts.setdefault(rule, {})[outcome] = int(count)
    return tuple(
        PolicyCountView(rule, by.get("FIRED", 0), by.get("SKIPPED_COOLDOWN", 0), by.get("ERROR", 0))
        for rule, by in sorted(counts.items())
    )
