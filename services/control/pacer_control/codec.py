"""Translation between protobuf messages and the control plane's domain values."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache

from google.protobuf.timestamp_pb2 import Timestamp

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import policies, runs
from pacer_common.errors import InvalidArgument
from pacer_common.retries import Attempt, RetryPolicy
from pacer_control.actions import EndpointChanges, EndpointSpec, EndpointView
from pacer_control.catalog import HealthView, JobView, ListedEndpoint, PolicyCountView
from pacer_control.models import AuditRecord, PolicyFiring, Run
from pacer_control.validation import BaselineInput, ClampInput

JOB_STATUS_FILTERS: dict[int, str | None] = {
    pb.JOB_STATUS_UNSPECIFIED: None,
    pb.JOB_STATUS_ACTIVE: "active",
    pb.JOB_STATUS_ARCHIVED: "archived",
}
RUN_STATUS_FILTERS: dict[int, str] = {
    pb.RUN_STATUS_FILTER_UNSPECIFIED: "all",
    pb.RUN_STATUS_FILTER_SUCCESS: "success",
    pb.RUN_STATUS_FILTER_FAILURE: "failure",
    pb.RUN_STATUS_FILTER_RUNNING: "running",
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts(moment: datetime | None) -> Timestamp | None:
    """The Timestamp of an aware datetime, None for None."""
    if moment is None:
        return None
    stamp = Timestamp()
    _stamp(stamp, moment)
    return stamp


def _stamp(stamp: Timestamp, moment: datetime) -> None:
    # From the offset to the epoch: a fifth of the cost of Timestamp.FromDatetime, which counts when a response
    # carries thousands of times.
    since = moment - _EPOCH
    stamp.SetInParent()
    stamp.seconds = since.days * 86_400 + since.seconds
    stamp.nanos = since.microseconds * 1000


# What google.protobuf.Timestamp itself allows (and datetime can hold): 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
_MAX_NANOS = 999_999_999


def moment(message: object, field: str, path: str = "") -> datetime | None:
    """The aware UTC datetime in a Timestamp field, None when the field is unset.

    Raises InvalidArgument naming `path + field` for seconds or nanos outside the Timestamp's own range.
    """
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(message, field)
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos <= _MAX_NANOS):
        raise InvalidArgument.single(path + field, "must be a time between 0001-01-01 and 9999-12-31 (UTC)")
    return stamp.ToDatetime(tzinfo=UTC)


def job_status_filter(value: int) -> str | None:
    """The ListJobs status filter (None = every status); an unknown enum number is INVALID_ARGUMENT."""
    if value not in JOB_STATUS_FILTERS:
        raise InvalidArgument.single("status", f"unknown job status {value}")
    return JOB_STATUS_FILTERS[value]


def run_status_filter(value: int) -> str:
    """The ListRuns status filter; an unknown enum number is INVALID_ARGUMENT."""
    if value not in RUN_STATUS_FILTERS:
        raise InvalidArgument.single("status", f"unknown run status filter {value}")
    return RUN_STATUS_FILTERS[value]


def job_status(value: str) -> pb.JobStatus.ValueType:
    return pb.JobStatus.Value(f"JOB_STATUS_{value.upper()}")


@cache
def run_source(value: str) -> pb.RunSource.ValueType:
    return pb.RunSource.Value(f"RUN_SOURCE_{value.upper().replace('-', '_')}")


def baseline(message: pb.AddEndpointToJobRequest | pb.UpdateEndpointConfigRequest) -> BaselineInput | None:
    if not message.HasField("baseline"):
        return None
    sent = message.baseline
    cron = sent.cron if sent.HasField("cron") else None
    return BaselineInput(
        cron_expression=cron.expression if cron is not None else None,
        cron_timezone=cron.timezone if cron is not None else "",
        interval_ms=sent.interval_ms if sent.interval_ms != 0 else None,
    )


def clamp(message: pb.Clamp) -> ClampInput:
    return ClampInput(message.min_interval_ms, message.max_interval_ms)


def endpoint_spec(request: pb.AddEndpointToJobRequest) -> EndpointSpec:
    return EndpointSpec(
        name=request.name,
        url=request.url,
        method=request.method,
        headers=dict(request.headers),
        body=request.body,
        baseline=baseline(request),
        clamp=clamp(request.clamp),
        timeout_ms=request.timeout_ms,
        jitter_ms=request.jitter_ms,
        signing_secret=request.signing_secret,
        policies=rules(request.policies, "policies"),
        retry=retry_sent(request.retry),
    )


def endpoint_changes(request: pb.UpdateEndpointConfigRequest) -> EndpointChanges:
    def optional(field: str) -> object:
        return getattr(request, field) if request.HasField(field) else None  # type: ignore[arg-type]

    return EndpointChanges(
        name=optional("name"),  # type: ignore[arg-type]
        url=optional("url"),  # type: ignore[arg-type]
        method=optional("method"),  # type: ignore[arg-type]
        headers=dict(request.headers.entries) if request.HasField("headers") else None,
        body=optional("body"),  # type: ignore[arg-type]
        baseline=baseline(request),
        clamp=clamp(request.clamp) if request.HasField("clamp") else None,
        timeout_ms=optional("timeout_ms"),  # type: ignore[arg-type]
        jitter_ms=optional("jitter_ms"),  # type: ignore[arg-type]
        signing_secret=optional("signing_secret"),  # type: ignore[arg-type]
        signing_overlap_ms=optional("signing_overlap_ms"),  # type: ignore[arg-type]
        policies=rules(request.policies.rules, "policies.rules") if request.HasField("policies") else None,
        retry=retry_sent(request.retry) if request.HasField("retry") else None,
    )


def retry_sent(message: pb.RetryPolicy) -> RetryPolicy:
    """The retry policy as sent, zeros included (`Checks.retry` gives them their defaults)."""
    return RetryPolicy(message.max_attempts, message.backoff_ms)


def retry_policy(policy: RetryPolicy) -> pb.RetryPolicy:
    return pb.RetryPolicy(max_attempts=policy.max_attempts, backoff_ms=policy.backoff_ms)


def job(view: JobView) -> pb.Job:
    return pb.Job(
        job_id=view.job.id,
        name=view.job.name,
        description=view.job.description,
        status=job_status(view.job.status),
        created_at=ts(view.job.created_at),
        updated_at=ts(view.job.updated_at),
        endpoint_count=view.endpoint_count,
        failure_count=view.failure_count,
        archived_at=ts(view.job.archived_at),
    )


def job_summary(view: JobView) -> pb.JobSummary:
    return pb.JobSummary(
        job_id=view.job.id,
        name=view.job.name,
        status=job_status(view.job.status),
        endpoint_count=view.endpoint_count,
        last_run_at=ts(view.last_run_at),
    )


def endpoint_list(views: Iterable[EndpointView]) -> pb.ListJobEndpointsResponse:
    """ListJobEndpoints' response; each summary is filled in place, which costs a third of building each one and
    copying it into the list (a job may have thousands)."""
    response = pb.ListJobEndpointsResponse()
    add = response.endpoints.add
    for view in views:
        _fill_summary(add(), view)
    return response


def _fill_summary(summary: pb.EndpointSummary, view: EndpointView) -> None:
    endpoint = view.endpoint
    summary.endpoint_id = endpoint.id
    summary.name = endpoint.name
    summary.failure_count = endpoint.failure_count
    summary.paused = endpoint.paused
    summary.next_run_source = run_source(endpoint.next_run_source)
    summary.url = endpoint.url
    summary.method = endpoint.method
    summary.timeout_ms = endpoint.timeout_ms
    summary.config_digest = view.config_digest
    if endpoint.next_run_at is not None:
        _stamp(summary.next_run_at, endpoint.next_run_at)
    if endpoint.last_status is not None and endpoint.last_started_at is not None:
        _stamp(summary.last_run_at, endpoint.last_started_at)
    if endpoint.paused_until is not None:
        _stamp(summary.paused_until, endpoint.paused_until)
    if endpoint.cron_expression is not None:
        summary.baseline.cron.expression = endpoint.cron_expression
        summary.baseline.cron.timezone = endpoint.cron_timezone
    else:
        summary.baseline.interval_ms = endpoint.interval_ms or 0
    summary.baseline.SetInParent()
    summary.clamp.SetInParent()
    summary.clamp.min_interval_ms = endpoint.min_interval_ms
    summary.clamp.max_interval_ms = endpoint.max_interval_ms
    if endpoint.policies:
        summary.policies.extend(policy(rule) for rule in policies.from_json(endpoint.policies))
    if endpoint.hint_interval_ms is not None and endpoint.hint_expires_at is not None:
        summary.hint_interval_ms = endpoint.hint_interval_ms
        _stamp(summary.hint_expires_at, endpoint.hint_expires_at)
    _fill_delivery(summary, endpoint)


def _fill_delivery(summary: pb.EndpointSummary, endpoint: ListedEndpoint) -> None:
    """Jitter and whether requests are signed; never a signing secret."""
    summary.jitter_ms = endpoint.jitter_ms
    summary.signed = endpoint.signed
    summary.retry.max_attempts = endpoint.retry_max_attempts
    summary.retry.backoff_ms = endpoint.retry_backoff_ms
    if endpoint.previous_secret_expires_at is not None:
        _stamp(summary.previous_secret_expires_at, endpoint.previous_secret_expires_at)


def run_summary(run: Run) -> pb.RunSummary:
    return pb.RunSummary(
        run_id=run.id,
        endpoint_id=run.endpoint_id,
        job_id=run.job_id,
        scheduled_for=ts(run.scheduled_for),
        started_at=ts(run.started_at),
        status=runs.to_proto(run.status),
        duration_ms=run.duration_ms,
        source=run_source(run.source),
    )


def run(record: Run, firings: Iterable[PolicyFiring] = ()) -> pb.Run:
    message = pb.Run(
        run_id=record.id,
        endpoint_id=record.endpoint_id,
        job_id=record.job_id,
        status=runs.to_proto(record.status),
        source=run_source(record.source),
        attempt=record.attempt,
        scheduled_for=ts(record.scheduled_for),
        started_at=ts(record.started_at),
        finished_at=ts(record.finished_at),
        duration_ms=record.duration_ms,
        http_status=record.http_status,
        error_message=record.error_message,
        response_body=record.response_body,
        response_truncated=record.response_truncated,
        policy_firings=[policy_firing(firing) for firing in firings],
    )
    for stored in record.attempts or ():
        Attempt.from_json(stored).fill(message.attempts.add())
    return message


def audit_record(record: AuditRecord) -> pb.AuditRecord:
    return pb.AuditRecord(
        audit_id=str(record.id),
        actor=record.actor,
        action=record.action,
        target_type=record.target_type,
        target_id=record.target_id,
        reason=record.reason,
        at=ts(record.at),
        job_id=record.job_id or "",
    )


def health(view: HealthView) -> pb.SummarizeEndpointHealthResponse:
    last = view.last_run
    return pb.SummarizeEndpointHealthResponse(
        success_count=view.success_count,
        failure_count=view.failure_count,
        avg_duration_ms=view.avg_duration_ms,
        p95_duration_ms=view.p95_duration_ms,
        last_run=pb.LastRun(status=runs.to_proto(last.status), at=ts(last.finished_at)) if last else None,
        failure_streak=view.failure_streak,
        missed_slots=view.missed_slots,
        last_missed_at=ts(view.last_missed_at),
        policy_counts=[policy_count(count) for count in view.policy_counts],
    )


# -- policies ------------------------------------------------------------------------------------------------------

_STEPS: dict[str, type[policies.Step]] = {
    "interval_hint": policies.IntervalHint,
    "one_shot": policies.OneShot,
    "pause": policies.Pause,
    "resume": policies.Resume,
    "clear_hints": policies.ClearHints,
    "reset_failures": policies.ResetFailures,
}
_OUTCOMES: dict[str, pb.PolicyOutcome.ValueType] = {
    policies.Outcome.FIRED: pb.POLICY_OUTCOME_FIRED,
    policies.Outcome.SKIPPED_COOLDOWN: pb.POLICY_OUTCOME_SKIPPED_COOLDOWN,
    policies.Outcome.ERROR: pb.POLICY_OUTCOME_ERROR,
}


def rules(sent: Iterable[pb.Policy], field: str) -> tuple[policies.Rule, ...]:
    """The rules as sent; an action that sets no kind is INVALID_ARGUMENT naming `field[i].then[j]`."""
    return tuple(
        policies.Rule(
            name=rule.name,
            when=rule.when,
            then=tuple(_action(action, f"{field}[{i}].then[{j}]") for j, action in enumerate(rule.then)),
            cooldown_ms=rule.cooldown_ms,
        )
        for i, rule in enumerate(sent)
    )


def _action(sent: pb.PolicyAction, field: str) -> policies.Action:
    kind = sent.WhichOneof("action")
    if kind is None:
        raise InvalidArgument.single(field, f"set exactly one of {', '.join(_STEPS)}")
    step = getattr(sent, kind)
    values = {f.name: getattr(step, f.name) for f in step.DESCRIPTOR.fields}
    return policies.Action(_STEPS[kind](**values), sent.endpoint)


def policy(rule: policies.Rule) -> pb.Policy:
    message = pb.Policy(name=rule.name, when=rule.when, cooldown_ms=rule.cooldown_ms)
    for action in rule.then:
        added = message.then.add(endpoint=action.endpoint)
        step = getattr(added, policies.step_kind(action.step))
        step.SetInParent()
        for name, value in vars(action.step).items():
            setattr(step, name, value)
    return message


def policy_firing(firing: PolicyFiring) -> pb.PolicyFiring:
    return pb.PolicyFiring(
        rule=firing.rule,
        outcome=_OUTCOMES[firing.outcome],
        effects=list(firing.effects),
        error_message=firing.error_message,
        at=ts(firing.at),
    )


def policy_count(count: PolicyCountView) -> pb.PolicyCount:
    return pb.PolicyCount(
        rule=count.rule, fired=count.fired, skipped_cooldown=count.skipped_cooldown, errors=count.errors
    )
