"""The 17 public actions: validation, tenancy, audit and an immediate governor re-plan for schedule changes.

Synchronous by design: the gRPC layer runs each call on the database worker pool.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pacer_common import policies, transitions
from pacer_common.clock import Clock
from pacer_common.digest import config_digest
from pacer_common.errors import FailedPrecondition, InvalidArgument, NotFound
from pacer_common.ids import looks_like, new_endpoint_id, new_job_id
from pacer_common.retries import NO_RETRY, RetryPolicy
from pacer_common.runs import FAILURES, RunStatus
from pacer_common.urls import split_password, with_password
from pacer_control import jittering, schedule, signing
from pacer_control.auth import Principal
from pacer_control.catalog import Audit, Catalog, HealthView, JobView, ListedEndpoint
from pacer_control.conditions import RuleChecker, interval_hints
from pacer_control.models import AuditRecord, Endpoint, Job, PolicyFiring, Run
from pacer_control.quotas import QuotaGuard
from pacer_control.sandbox import Sandbox
from pacer_control.sealing import EndpointSecrets
from pacer_control.store import JOB_ACTIVE, JOB_ARCHIVED
from pacer_control.validation import MAX_DESCRIPTION, BaselineInput, Checks, ClampInput

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
DEFAULT_RUN_LIMIT = 50
MAX_RUN_LIMIT = 500
DEFAULT_WINDOW_HOURS = 24
DEFAULT_CONDITION_DEADLINE_MS = 250
MAX_WINDOW_HOURS = 720
RUN_FILTERS: dict[str, tuple[RunStatus, ...] | None] = {
    "all": None,
    "success": (RunStatus.SUCCESS,),
    "failure": FAILURES,
    "running": (RunStatus.RUNNING,),
}


@dataclass(frozen=True)
class EndpointSpec:
    """Everything AddEndpointToJob needs, as sent."""

    name: str
    url: str
    method: str = ""
    headers: Mapping[str, str] | None = None
    body: str = ""
    baseline: BaselineInput | None = None
    clamp: ClampInput = field(default_factory=ClampInput)
    timeout_ms: int = 0
    jitter_ms: int = 0
    signing_secret: str = field(default="", repr=False)
    policies: tuple[policies.Rule, ...] = ()
    retry: RetryPolicy = NO_RETRY


@dataclass(frozen=True)
class EndpointChanges:
    """UpdateEndpointConfig: None means keep the current value."""

    name: str | None = None
    url: str | None = None
    method: str | None = None
    headers: Mapping[str, str] | None = None
    body: str | None = None
    baseline: BaselineInput | None = None
    clamp: ClampInput | None = None
    timeout_ms: int | None = None
    jitter_ms: int | None = None
    signing_secret: str | None = field(default=None, repr=False)
    signing_overlap_ms: int | None = None
    # Replaces every rule when set; an empty tuple removes them.
    policies: tuple[policies.Rule, ...] | None = None
    retry: RetryPolicy | None = None

    @property
    def signing(self) -> bool:
        """True when the change sets, rotates or stops the signing secret, or moves a rotation's end."""
        return self.signing_secret is not None or self.signing_overlap_ms is not None


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    next_page_token: str


@dataclass(frozen=True)
class EndpointView:
    """An endpoint as ListJobEndpoints shows it: its row and the digest of its secrets and body."""

    endpoint: ListedEndpoint
    config_digest: str


class DigestCache:
    """Config digests by what they are computed from: an endpoint's sealed secrets and its body.

    Opening the secrets and hashing them is most of what listing a large job costs, and the same endpoints are
    listed again and again (every `pacerctl apply` reads them). The key is exact: a new seal (any change of headers
    or URL password) or body makes a new entry. Bodies over CACHED_BODY_CHARS are not kept, and the cache starts
    afresh past MAX_DIGESTS entries, so it stays a few megabytes.
    """

    CACHED_BODY_CHARS = 1024
    MAX_DIGESTS = 50_000

    def __init__(self) -> None:
        self._known: dict[tuple[str | None, str], str] = {}

    def digest(self, endpoint: ListedEndpoint, compute: Callable[[], str]) -> str:
        if len(endpoint.body) > self.CACHED_BODY_CHARS:
            return compute()
        key = (endpoint.secrets, endpoint.body)
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= self.MAX_DIGESTS:
                self._known.clear()
            found = self._known[key] = compute()
        return found


@dataclass(frozen=True)
class PauseState:
    paused: bool
    paused_until: datetime | None
    next_run_at: datetime | None


def _require_id(kind: str, prefix: str, value: str) -> None:
    # A malformed id cannot name anything: same answer as an unknown one, so ids reveal nothing.
    if not looks_like(prefix, value):
        raise NotFound(kind, value)


def _require_live(endpoint: Endpoint, job: Job) -> None:
    if endpoint.deleted_at is not None:
        raise FailedPrecondition(f"endpoint {endpoint.id!r} was deleted")
    if job.status != JOB_ACTIVE:
        raise FailedPrecondition(f"job {job.id!r} is archived")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PAGE_TOKEN = 100
# A page token is base64url of "<created_at in microseconds since the epoch>.<job id>", parsed by this pattern
# alone: opaque to callers, and nothing a caller sends is handed to a general-purpose parser.
_CURSOR = re.compile(r"(-?\d{1,17})\.(job_[0-9a-z]{26})")


def _encode_cursor(job: Job) -> str:
    micros = (job.created_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{job.id}".encode()).decode().rstrip("=")


def _token_match(token: str, pattern: re.Pattern[str], rpc: str) -> re.Match[str]:
    """The fields of a page token: base64url text that `pattern` matches whole; INVALID_ARGUMENT `page_token`
    naming `rpc` otherwise. Nothing a caller sends reaches a general-purpose parser."""
    bad = InvalidArgument.single("page_token", f"is not a token returned by {rpc}")
    if len(token) > MAX_PAGE_TOKEN or not token.isascii():
        raise bad
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, binascii.Error):
        raise bad from None
    found = pattern.fullmatch(text)
    if found is None:
        raise bad
    return found


def _decode_cursor(token: str) -> tuple[datetime, str]:
    found = _token_match(token, _CURSOR, "ListJobs")
    if not looks_like("job", found[2]):
        raise InvalidArgument.single("page_token", "is not a token returned by ListJobs")
    try:
        return _EPOCH + timedelta(microseconds=int(found[1])), found[2]
    except OverflowError:
        raise InvalidArgument.single("page_token", "is not a token returned by ListJobs") from None


# An audit page token is base64url of "audit.<id of the last record on the page>", parsed by this pattern alone.
_AUDIT_CURSOR = re.compile(r"audit\.(\d{1,18})")


def _encode_audit_cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit.{record_id}".encode()).decode().rstrip("=")


def _decode_audit_cursor(token: str) -> int:
    return int(_token_match(token, _AUDIT_CURSOR, "ListAuditRecords")[1])


@dataclass(frozen=True)
class AuditPage:
    """One page of an audit trail, newest first, and the token of the next ("" on the last)."""

    records: list[AuditRecord]
    next_page_token: str


class ControlActions:
    """The public actions over one catalog, one clock and the service's interval floor."""

    def __init__(
        self,
        catalog: Catalog,
        clock: Clock,
        min_interval_ms: int,
        quotas: QuotaGuard,
        rules: RuleChecker | None = None,
    ) -> None:
        """`rules` checks endpoint policies (by default with a sandbox of its own, started on first use)."""
        self._catalog = catalog
        self._clock = clock
        self._floor_ms = min_interval_ms
        self._quotas = quotas
        self._digests = DigestCache()
        self._rules = rules or RuleChecker(min_interval_ms, Sandbox(DEFAULT_CONDITION_DEADLINE_MS))

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- jobs ------------------------------------------------------------------------------------------------------

    def create_job(self, who: Principal, name: str, description: str) -> Job:
        checks = Checks()
        checks.name(name)
        checks.text(description, "description", MAX_DESCRIPTION)
        checks.done()
        now = self._clock.now()
        job = Job(
            id=new_job_id(),
            tenant_id=who.tenant_id,
            name=name.strip(),
            description=description,
            status=JOB_ACTIVE,
            created_at=now,
            updated_at=now,
        )
        self._catalog.insert_job(
            job, Audit("CreateJob", "job", actor=who.actor), self._quotas.quota(who.tenant_id).max_jobs
        )
        return job

    def get_job(self, who: Principal, job_id: str) -> JobView:
        _require_id("job", "job", job_id)
        return self._catalog.get_job(who.tenant_id, job_id)

    def list_jobs(self, who: Principal, status: str | None, page_size: int, page_token: str) -> JobPage:
        checks = Checks()
        checks.in_range(page_size, "page_size", 0, MAX_PAGE_SIZE)
        checks.done()
        size = page_size or DEFAULT_PAGE_SIZE
        after = _decode_cursor(page_token) if page_token else None
        views = self._catalog.list_jobs(who.tenant_id, status, size + 1, after)
        more = len(views) > size
        views = views[:size]
        return JobPage(views, _encode_cursor(views[-1].job) if more else "")

    def update_job(
        self, who: Principal, job_id: str, name: str | None, description: str | None, reason: str
    ) -> datetime:
        checks = Checks()
        if name is not None:
            checks.name(name)
        if description is not None:
            checks.text(description, "description", MAX_DESCRIPTION)
        checks.reason(reason)
        checks.done()
        _require_id("job", "job", job_id)
        now = self._clock.now()

        def change(job: Job) -> datetime:
            if job.status == JOB_ARCHIVED:
                raise FailedPrecondition(f"job {job_id!r} is archived")
            job.name = name.strip() if name is not None else job.name
            job.description = description if description is not None else job.description
            job.updated_at = now
            return now

        return self._catalog.change_job(
            who.tenant_id, job_id, change, Audit("UpdateJob", "job", reason, actor=who.actor), now
        )

    def archive_job(self, who: Principal, job_id: str, reason: str) -> datetime:
        checks = Checks()
        checks.reason(reason)
        checks.done()
        _require_id("job", "job", job_id)
        now = self._clock.now()
        return self._catalog.archive_job(
            who.tenant_id, job_id, Audit("ArchiveJob", "job", reason, actor=who.actor), now
        )

    # -- endpoints -------------------------------------------------------------------------------------------------

    def add_endpoint(self, who: Principal, job_id: str, spec: EndpointSpec, reason: str) -> Endpoint:
        checks = Checks()
        checks.name(spec.name)
        checks.url(spec.url)
        method = checks.method(spec.method)
        checks.headers(spec.headers or {})
        checks.body(spec.body)
        timeout_ms = checks.timeout(spec.timeout_ms)
        retry = checks.retry(spec.retry)
        checks.baseline(spec.baseline, self._floor_ms)
        checks.clamp(spec.clamp, self._floor_ms)
        checks.reason(reason)
        self._rules.check(checks, spec.policies, "policies")
        now = self._clock.now()
        jittering.check(checks, spec.jitter_ms, jittering.baseline_of(spec.baseline), now)
        signing.check_secret(checks, spec.signing_secret, stopping_allowed=True)
        checks.done()
        _require_id("job", "job", job_id)
        self._check_quota_intervals(who, spec.baseline, spec.clamp)
        self._quotas.check_intervals(who.tenant_id, interval_hints(spec.policies, "policies"))
        endpoint = Endpoint(
            id=new_endpoint_id(),
            tenant_id=who.tenant_id,
            job_id=job_id,
            name=spec.name.strip(),
            method=method,
            body=spec.body,
            timeout_ms=timeout_ms,
            created_at=now,
            updated_at=now,
            anchor_at=now,
            failure_count=0,
            paused=False,
            jitter_ms=spec.jitter_ms,
            policies=policies.to_json(spec.policies),
            retry_max_attempts=retry.max_attempts,
            retry_backoff_ms=retry.backoff_ms,
        )
        signs = signing.first(EndpointSecrets(), spec.signing_secret)
        self._keep_secrets(endpoint, spec.url, spec.headers or {}, signs.secrets)
        endpoint.signed, endpoint.previous_secret_expires_at = signs.signed, None
        _set_baseline(endpoint, spec.baseline)
        _set_clamp(endpoint, spec.clamp)
        schedule.replan(endpoint, now)

        def admit(job_status: str) -> None:
            if job_status != JOB_ACTIVE:
                raise FailedPrecondition(f"job {job_id!r} is archived")

        audit = Audit("AddEndpointToJob", "endpoint", reason, actor=who.actor)
        max_endpoints = self._quotas.quota(who.tenant_id).max_endpoints
        self._catalog.insert_endpoint(endpoint, admit, audit, now, max_endpoints)
        return endpoint

    def update_endpoint(self, who: Principal, endpoint_id: str, changes: EndpointChanges, reason: str) -> Endpoint:
        checks, now = self._check_changes(changes, reason), self._clock.now()
        method = checks.method(changes.method) if changes.method is not None else None
        timeout_ms = checks.timeout(changes.timeout_ms) if changes.timeout_ms is not None else None
        retry = checks.retry(changes.retry) if changes.retry is not None else None
        if changes.jitter_ms is not None:
            jittering.check(checks, changes.jitter_ms, None, now)  # its fit with the baseline: see _respread
        signing.check_secret(checks, changes.signing_secret, stopping_allowed=True)
        signing.check_overlap(checks, changes.signing_overlap_ms)
        if changes.policies is not None:
            self._rules.check(checks, changes.policies, "policies.rules")
        checks.done()
        self._check_quota_intervals(who, changes.baseline, changes.clamp)
        self._quotas.check_intervals(who.tenant_id, interval_hints(changes.policies or (), "policies.rules"))

        def change(endpoint: Endpoint, job: Job) -> Endpoint:
            _require_live(endpoint, job)
            if changes.url is not None or changes.headers is not None or changes.signing:
                held = self._secrets(endpoint)
                url = changes.url if changes.url is not None else with_password(endpoint.url, held.password)
                headers = changes.headers if changes.headers is not None else held.headers
                self._keep_secrets(endpoint, url, headers, self._resigned(endpoint, held, changes, now))
            _apply_changes(endpoint, changes, method, timeout_ms)
            if retry is not None:
                endpoint.retry_max_attempts, endpoint.retry_backoff_ms = retry.max_attempts, retry.backoff_ms
            _respread(endpoint, changes, now)
            if changes.baseline is not None:
                endpoint.anchor_at = now  # a new cadence starts from the moment it was set
            endpoint.updated_at = now
            schedule.replan(endpoint, now)
            return endpoint

        return self._change(
            who, endpoint_id, change, Audit("UpdateEndpointConfig", "endpoint", reason, actor=who.actor), now
        )

    def _check_changes(self, changes: EndpointChanges, reason: str) -> Checks:
        checks = Checks()
        if changes.name is not None:
            checks.name(changes.name)
        if changes.url is not None:
            checks.url(changes.url)
        if changes.headers is not None:
            checks.headers(changes.headers)
        if changes.body is not None:
            checks.body(changes.body)
        if changes.baseline is not None:
            checks.baseline(changes.baseline, self._floor_ms)
        if changes.clamp is not None:
            checks.clamp(changes.clamp, self._floor_ms)
        checks.reason(reason)
        return checks

    def delete_endpoint(self, who: Principal, endpoint_id: str, reason: str) -> datetime:
        now = self._checked_reason(reason)

        def change(endpoint: Endpoint, job: Job) -> datetime:
            if endpoint.deleted_at is None:
                endpoint.deleted_at = endpoint.updated_at = now
                schedule.replan(endpoint, now, live=False)
            return endpoint.deleted_at

        return self._change(who, endpoint_id, change, Audit("DeleteEndpoint", "endpoint", reason, actor=who.actor), now)

    def list_job_endpoints(self, who: Principal, job_id: str) -> list[EndpointView]:
        _require_id("job", "job", job_id)
        now = self._clock.now()
        return [self._view(_rotation_shown(e, now)) for e in self._catalog.list_job_endpoints(who.tenant_id, job_id)]

    def _view(self, endpoint: ListedEndpoint) -> EndpointView:
        def compute() -> str:
            secrets = self._secrets(endpoint)
            return config_digest(secrets.headers, endpoint.body, secrets.password)

        return EndpointView(endpoint, self._digests.digest(endpoint, compute))

    # -- secrets at rest ---------------------------------------------------------------------------------------------

    def _secrets(self, endpoint: Endpoint | ListedEndpoint) -> EndpointSecrets:
        return EndpointSecrets.open(self._catalog.keyring, endpoint.id, endpoint.secrets)

    def _keep_secrets(
        self, endpoint: Endpoint, url: str, headers: Mapping[str, str], signs: EndpointSecrets | None = None
    ) -> None:
        """Store `url` with its password masked, and seal the password, `headers` and the signing secrets of `signs`
        (pacer_control.sealing)."""
        endpoint.url, password = split_password(url)
        kept = replace(signs or EndpointSecrets(), headers=dict(headers), password=password)
        endpoint.secrets = kept.seal(self._catalog.keyring, endpoint.id)

    @staticmethod
    def _resigned(
        endpoint: Endpoint, held: EndpointSecrets, changes: EndpointChanges, now: datetime
    ) -> EndpointSecrets:
        """The endpoint's secrets with `changes`' signing applied (`pacer_control.signing.rotate`); its row follows."""
        if not changes.signing:
            return held
        signs = signing.rotate(
            held, endpoint.previous_secret_expires_at, changes.signing_secret, changes.signing_overlap_ms, now
        )
        endpoint.signed, endpoint.previous_secret_expires_at = signs.signed, signs.previous_expires_at
        return signs.secrets

    # -- steering --------------------------------------------------------------------------------------------------

    def apply_interval_hint(
        self, who: Principal, endpoint_id: str, interval_ms: int, ttl_minutes: int | None, reason: str
    ) -> Endpoint:
        checks = Checks()
        checks.interval(interval_ms, "interval_ms", self._floor_ms)
        ttl = checks.ttl(ttl_minutes)
        checks.reason(reason)
        checks.done()
        self._quotas.check_intervals(who.tenant_id, {"interval_ms": interval_ms})
        now = self._clock.now()

        def change(endpoint: Endpoint, job: Job) -> Endpoint:
            _require_live(endpoint, job)
            hinted = transitions.on_interval_hint(
                schedule.state_of(endpoint), interval_ms, now + timedelta(minutes=ttl), now
            )
            schedule.store(endpoint, hinted)
            return endpoint

        return self._change(
            who, endpoint_id, change, Audit("ApplyIntervalHint", "endpoint", reason, actor=who.actor), now
        )

    def schedule_one_shot(
        self, who: Principal, endpoint_id: str, run_at: datetime | None, ttl_minutes: int | None, reason: str
    ) -> datetime:
        now = self._clock.now()
        checks = Checks()
        checks.run_at(run_at, now)
        ttl = checks.ttl(ttl_minutes)
        checks.reason(reason)
        checks.done()
        assert run_at is not None
        floor_ms = max(self._floor_ms, self._quotas.quota(who.tenant_id).min_interval_ms)

        def change(endpoint: Endpoint, job: Job) -> datetime:
            _require_live(endpoint, job)
            asked = transitions.on_one_shot(schedule.state_of(endpoint), run_at, timedelta(minutes=ttl), floor_ms, now)
            schedule.store(endpoint, asked.replanned)
            return asked.scheduled_for

        return self._change(
            who, endpoint_id, change, Audit("ScheduleOneShotRun", "endpoint", reason, actor=who.actor), now
        )

    def pause_or_resume(
        self, who: Principal, endpoint_id: str, pause_until: datetime | None, resume: bool, reason: str
    ) -> PauseState:
        now = self._clock.now()
        checks = Checks()
        if resume and pause_until is not None:
            checks.fail("pause_until", "must not be set together with resume")
        elif pause_until is not None and pause_until <= now:
            checks.fail("pause_until", "must be in the future")
        checks.reason(reason)
        checks.done()

        def change(endpoint: Endpoint, job: Job) -> PauseState:
            _require_live(endpoint, job)
            state = schedule.state_of(endpoint)
            paused = transitions.on_resume(state, now) if resume else transitions.on_pause(state, pause_until, now)
            schedule.store(endpoint, paused)
            return PauseState(endpoint.paused, endpoint.paused_until, endpoint.next_run_at)

        return self._change(
            who, endpoint_id, change, Audit("PauseOrResumeEndpoint", "endpoint", reason, actor=who.actor), now
        )

    def clear_hints(self, who: Principal, endpoint_id: str, reason: str) -> tuple[datetime, Endpoint]:
        now = self._checked_reason(reason)

        def change(endpoint: Endpoint, job: Job) -> tuple[datetime, Endpoint]:
            _require_live(endpoint, job)
            schedule.store(endpoint, transitions.on_clear_hints(schedule.state_of(endpoint), now))
            return now, endpoint

        return self._change(
            who, endpoint_id, change, Audit("ClearAdaptiveHints", "endpoint", reason, actor=who.actor), now
        )

    def reset_failures(self, who: Principal, endpoint_id: str, reason: str) -> Endpoint:
        now = self._checked_reason(reason)

        def change(endpoint: Endpoint, job: Job) -> Endpoint:
            _require_live(endpoint, job)
            schedule.store(endpoint, transitions.on_reset_failures(schedule.state_of(endpoint), now))
            return endpoint

        return self._change(
            who, endpoint_id, change, Audit("ResetFailureCount", "endpoint", reason, actor=who.actor), now
        )

    # -- visibility ------------------------------------------------------------------------------------------------

    def list_runs(
        self,
        who: Principal,
        *,
        job_id: str | None,
        endpoint_id: str | None,
        status: str,
        limit: int,
        offset: int,
    ) -> tuple[list[Run], int]:
        checks = Checks()
        checks.in_range(limit, "limit", 0, MAX_RUN_LIMIT)
        if offset < 0:
            checks.fail("offset", "must not be negative")
        checks.done()
        if (job_id is not None and not looks_like("job", job_id)) or (
            endpoint_id is not None and not looks_like("ep", endpoint_id)
        ):
            return [], 0  # no run can match an id of the wrong shape, as none matches another tenant's id
        return self._catalog.list_runs(
            who.tenant_id,
            job_id=job_id,
            endpoint_id=endpoint_id,
            statuses=RUN_FILTERS[status],
            limit=limit or DEFAULT_RUN_LIMIT,
            offset=offset,
        )

    def list_audit_records(
        self, who: Principal, job_id: str, endpoint_id: str, page_size: int, page_token: str
    ) -> AuditPage:
        checks = Checks()
        if bool(job_id) == bool(endpoint_id):
            checks.fail("job_id", "give exactly one of job_id and endpoint_id")
        checks.in_range(page_size, "page_size", 0, MAX_PAGE_SIZE)
        checks.done()
        if job_id:
            _require_id("job", "job", job_id)
        else:
            _require_id("endpoint", "ep", endpoint_id)
        size = page_size or DEFAULT_PAGE_SIZE
        before = _decode_audit_cursor(page_token) if page_token else None
        records = self._catalog.audit_records(who.tenant_id, job_id or None, endpoint_id or None, before, size + 1)
        more = len(records) > size
        records = records[:size]
        return AuditPage(records, _encode_audit_cursor(records[-1].id) if more else "")

    def get_run(self, who: Principal, run_id: str) -> Run:
        _require_id("run", "run", run_id)
        return self._catalog.get_run(who.tenant_id, run_id)

    def get_run_details(self, who: Principal, run_id: str) -> tuple[Run, list[PolicyFiring]]:
        """The run and the rules whose condition held on it."""
        run = self.get_run(who, run_id)
        return run, self._catalog.run_firings(who.tenant_id, run_id)

    def endpoint_health(self, who: Principal, endpoint_id: str, window_hours: int) -> HealthView:
        checks = Checks()
        checks.in_range(window_hours, "window_hours", 0, MAX_WINDOW_HOURS)
        checks.done()
        _require_id("endpoint", "ep", endpoint_id)
        since = self._clock.now() - timedelta(hours=window_hours or DEFAULT_WINDOW_HOURS)
        return self._catalog.endpoint_health(who.tenant_id, endpoint_id, since)

    # -- shared steps --------------------------------------------------------------------------------------------

    def _check_quota_intervals(self, who: Principal, baseline: BaselineInput | None, clamp: ClampInput | None) -> None:
        """Hold valid intervals to the tenant's own floor (RESOURCE_EXHAUSTED, not a validation error)."""
        intervals = {}
        if baseline is not None and baseline.interval_ms is not None:
            intervals["baseline.interval_ms"] = baseline.interval_ms
        if clamp is not None:
            intervals["clamp.min_interval_ms"] = clamp.min_interval_ms
            intervals["clamp.max_interval_ms"] = clamp.max_interval_ms
        self._quotas.check_intervals(who.tenant_id, intervals)
        if baseline is not None and baseline.cron_expression is not None:
            self._quotas.check_cron(who.tenant_id, "baseline.cron", baseline.cron_expression, baseline.cron_timezone)

    def _checked_reason(self, reason: str) -> datetime:
        checks = Checks()
        checks.reason(reason)
        checks.done()
        return self._clock.now()

    def _change(
        self, who: Principal, endpoint_id: str, change: Callable[[Endpoint, Job], T], audit: Audit, now: datetime
    ) -> T:
        _require_id("endpoint", "ep", endpoint_id)
        return self._catalog.change_endpoint(who.tenant_id, endpoint_id, change, audit, now)


def _set_baseline(endpoint: Endpoint, baseline: BaselineInput | None) -> None:
    assert baseline is not None
    endpoint.cron_expression = baseline.cron_expression
    endpoint.cron_timezone = baseline.cron_timezone if baseline.cron_expression is not None else ""
    endpoint.interval_ms = baseline.interval_ms


def _set_clamp(endpoint: Endpoint, clamp: ClampInput) -> None:
    endpoint.min_interval_ms = clamp.min_interval_ms
    endpoint.max_interval_ms = clamp.max_interval_ms


def _rotation_shown(endpoint: ListedEndpoint, now: datetime) -> ListedEndpoint:
    """`endpoint` as a read shows it: a signing rotation's end only while the previous secret still signs."""
    ends = endpoint.previous_secret_expires_at
    if ends is not None and ends <= now:
        return endpoint._replace(previous_secret_expires_at=None)
    return endpoint


def _respread(endpoint: Endpoint, changes: EndpointChanges, now: datetime) -> None:
    """Set the new jitter, which must fit the endpoint's baseline (new or kept) once `changes` are applied."""
    if changes.jitter_ms is None and changes.baseline is None:
        return
    jitter_ms = changes.jitter_ms if changes.jitter_ms is not None else endpoint.jitter_ms
    jittering.require_fits(jitter_ms, schedule.baseline_of(endpoint), now)
    endpoint.jitter_ms = jitter_ms


def _apply_changes(endpoint: Endpoint, changes: EndpointChanges, method: str | None, timeout_ms: int | None) -> None:
    endpoint.name = changes.name.strip() if changes.name is not None else endpoint.name
    endpoint.method = method if method is not None else endpoint.method
    endpoint.body = changes.body if changes.body is not None else endpoint.body
    endpoint.timeout_ms = timeout_ms if timeout_ms is not None else endpoint.timeout_ms
    if changes.baseline is not None:
        _set_baseline(endpoint, changes.baseline)
    if changes.clamp is not None:
        _set_clamp(endpoint, changes.clamp)
    if changes.policies is not None:
        endpoint.policies = policies.to_json(changes.policies)
