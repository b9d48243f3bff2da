"""Everything the scheduler measures, declared in one place on the registry its composition root made.

Served at `/metrics` (PACER_METRICS_ADDR); docs/operations.md lists every metric and what to alert on. The
read-only properties (`dispatched`, `redispatched`, ...) read the counters back for tests and log lines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pacer_common.telemetry import GrpcMetrics, grpc_metrics

# Lateness from a millisecond (the timer's own precision) to 10 s (something is badly wrong).
LATENESS_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLAIM_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CLAIM_SIZE_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
REPORT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECENT_SAMPLES = 1000


class SchedulerMetrics:
    """The scheduler's metrics on `registry` (a private one when None, as in unit tests).

    Besides the Prometheus families it keeps a bounded window of recent lateness samples, raw (negative when a
    run went out early), for tests and benchmarks.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        late_threshold_s: float = 10.0,
        measured_jobs: frozenset[str] = frozenset(),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._late_threshold_s = late_threshold_s
        self._measured_jobs = measured_jobs
        self.grpc_server: GrpcMetrics = grpc_metrics(self.registry, "server")
        self.grpc_client: GrpcMetrics = grpc_metrics(self.registry, "client")
        self.recent_lateness_s: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._declare_dispatch(self.registry)
        self._declare_broken_streams(self.registry)
        self._declare_claims(self.registry)
        self._declare_results(self.registry)
        self._declare_session(self.registry)

    def _declare_dispatch(self, registry: CollectorRegistry) -> None:
        self._lateness = Histogram(
            "pacer_dispatch_lateness_seconds",
            "Dispatch time minus scheduled time of each run handed to an executor (early runs count as 0).",
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self._dispatched = Counter("pacer_runs_dispatched_total", "Runs handed to an executor.", registry=registry)
        # By tenant: bounded by the number of tenants, which operators create. Per job only for the jobs
        # PACER_METRICS_JOBS names, so the series stay bounded however many jobs tenants make.
        self._tenant_lateness = Histogram(
            "pacer_tenant_dispatch_lateness_seconds",
            "Dispatch lateness of each run, by tenant (as pacer_dispatch_lateness_seconds).",
            ["tenant"],
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self._started_late = Counter(
            "pacer_runs_started_late",
            "Runs handed to an executor more than PACER_LATE_THRESHOLD_MS after they were due, by tenant.",
            ["tenant"],
            registry=registry,
        )
        self._job_lateness = Histogram(
            "pacer_job_dispatch_lateness_seconds",
            "Dispatch lateness of each run of the jobs PACER_METRICS_JOBS names, by tenant and job.",
            ["tenant", "job"],
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self._redispatched = Counter(
            "pacer_runs_redispatched_total",
            "Runs an executor gave back with Released (it would not begin them) that went out again.",
            registry=registry,
        )
        self._expired = Counter(
            "pacer_runs_expired_before_dispatch_total",
            "Claimed runs dropped because their lease expired before any executor had credit for them.",
            registry=registry,
        )
        self._executors = Gauge(
            "pacer_executors_connected", "Executor streams open to this scheduler.", registry=registry
        )
        self._credits = Gauge(
            "pacer_executor_credits",
            "Credits (free run slots) the connected executors have granted and not yet used.",
            registry=registry,
        )
        self._in_flight = Gauge(
            "pacer_runs_in_flight", "Runs dispatched to executors whose result has not arrived yet.", registry=registry
        )

    def _declare_broken_streams(self, registry: CollectorRegistry) -> None:
        self._released = Counter(
            "pacer_runs_released_total",
            "Runs executors gave back with Released (draining, they would not begin them): back to the ready queue.",
            registry=registry,
        )
        self._vanishing = Gauge(
            "pacer_runs_vanishing",
            "Runs sent on executor streams that ended, waiting out the grace for a result or Held.",
            registry=registry,
        )
        self._vanished = Counter(
            "pacer_runs_vanished_total",
            "Runs reported vanished to the control plane: their executor's stream ended and no result or Held came "
            "within the grace (the control plane settles them LOST unless an executor holds them).",
            registry=registry,
        )
        self._held = Counter(
            "pacer_runs_held_total",
            "Run ids executors said they hold (begun, stream broken) that were forwarded to the control plane.",
            registry=registry,
        )

    def _declare_session(self, registry: CollectorRegistry) -> None:
        self._session_valid = Gauge(
            "pacer_session_valid",
            "1 while this scheduler's session at the control plane is certainly alive (it dispatches), else 0.",
            registry=registry,
        )
        self._renewal_failures = Counter(
            "pacer_session_renewal_failures_total",
            "Heartbeats to the control plane that failed (unreachable, refused or session ended).",
            registry=registry,
        )
        self._sessions_lost = Counter(
            "pacer_sessions_lost_total",
            "Sessions the control plane ended (heartbeats missing for the TTL) while this scheduler still ran.",
            registry=registry,
        )
        self._dropped = Counter(
            "pacer_runs_dropped_session_lost_total",
            "Claimed runs dropped undispatched because the control plane ended the session (it handed them back).",
            registry=registry,
        )

    def _declare_claims(self, registry: CollectorRegistry) -> None:
        self._claim_seconds = Histogram(
            "pacer_claim_duration_seconds",
            "Duration of successful ClaimDueRuns calls to the control plane.",
            buckets=CLAIM_BUCKETS_S,
            registry=registry,
        )
        self._claim_size = Histogram(
            "pacer_claim_batch_size",
            "Runs returned by each successful ClaimDueRuns call.",
            buckets=CLAIM_SIZE_BUCKETS,
            registry=registry,
        )

    def _declare_results(self, registry: CollectorRegistry) -> None:
        self._report_seconds = Histogram(
            "pacer_result_report_seconds",
            "Duration of ReportResults calls to the control plane, successful or not.",
            buckets=REPORT_BUCKETS_S,
            registry=registry,
        )
        self._reported = Counter(
            "pacer_results_reported_total", "Run results delivered to the control plane.", registry=registry
        )
        self._report_failures = Counter(
            "pacer_result_report_failures_total",
            "ReportResults calls that failed (their results are kept and retried).",
            registry=registry,
        )
        self._buffered = Gauge(
            "pacer_results_buffered",
            "Results not yet recorded by the control plane; executors keep each until it is, and its ack comes.",
            registry=registry,
        )

    # -- recording ----------------------------------------------------------------------------------------------

    def dispatched_late(self, lateness_s: float, tenant_id: str = "", job_id: str = "") -> None:
        """Record one dispatch, `lateness_s` after its due time (negative when early), for the tenant's (and, when
        opted in, the job's) series too."""
        late = max(lateness_s, 0.0)
        self._dispatched.inc()
        self._lateness.observe(late)
        self.recent_lateness_s.append(lateness_s)
        self._tenant_lateness.labels(tenant_id).observe(late)
        # The tenant's series exists at 0 from its first dispatch on, so increase() and rate() see its first late
        # run too (a series that appears at 1 has no earlier sample to count the step from).
        started_late = self._started_late.labels(tenant_id)
        if late > self._late_threshold_s:
            started_late.inc()
        if job_id in self._measured_jobs:
            self._job_lateness.labels(tenant_id, job_id).observe(late)

    def runs_redispatched(self, count: int) -> None:
        self._redispatched.inc(count)

    def runs_released(self, count: int) -> None:
        self._released.inc(count)

    def runs_vanished(self, count: int) -> None:
        self._vanished.inc(count)

    def runs_held(self, count: int) -> None:
        self._held.inc(count)

    def run_expired(self) -> None:
        self._expired.inc()

    def executors_changed(self, connected: int, credits: int, in_flight: int, vanishing: int) -> None:
        """The dispatcher's state after a change: open streams, their unused credits, runs awaiting a result, runs
        of ended streams in their grace."""
        self._executors.set(connected)
        self._credits.set(credits)
        self._in_flight.set(in_flight)
        self._vanishing.set(vanishing)

    def watch_session(self, valid: Callable[[], bool]) -> None:
        """Read the session's validity at every scrape."""
        self._session_valid.set_function(lambda: 1.0 if valid() else 0.0)

    def session_renewal_failed(self) -> None:
        self._renewal_failures.inc()

    def session_lost(self) -> None:
        self._sessions_lost.inc()

    def runs_dropped(self, count: int) -> None:
        """`count` claimed runs dropped undispatched because the session ended."""
        self._dropped.inc(count)

    def results_buffered(self, count: int) -> None:
        self._buffered.set(count)

    def claimed(self, count: int, seconds: float) -> None:
        """One successful claim of `count` runs that took `seconds`."""
        self._claim_seconds.observe(seconds)
        self._claim_size.observe(count)

    def report_finished(self, count: int, seconds: float, *, delivered: bool) -> None:
        """One ReportResults call with `count` results, delivered or failed, that took `seconds`."""
        self._report_seconds.observe(seconds)
        if delivered:
            self._reported.inc(count)
        else:
            self._report_failures.inc()

    # -- reading back -------------------------------------------------------------------------------------------

    def _value(self, name: str) -> int:
        return int(self.registry.get_sample_value(name) or 0)

    @property
    def dispatched(self) -> int:
        return self._value("pacer_runs_dispatched_total")

    @property
    def redispatched(self) -> int:
        return self._value("pacer_runs_redispatched_total")

    @property
    def released(self) -> int:
        return self._value("pacer_runs_released_total")

    @property
    def vanished(self) -> int:
        return self._value("pacer_runs_vanished_total")

    @property
    def held(self) -> int:
        return self._value("pacer_runs_held_total")

    @property
    def renewal_failures(self) -> int:
        return self._value("pacer_session_renewal_failures_total")

    @property
    def sessions_lost(self) -> int:
        return self._value("pacer_sessions_lost_total")

    @property
    def dropped(self) -> int:
        return self._value("pacer_runs_dropped_session_lost_total")

    @property
    def expired(self) -> int:
        return self._value("pacer_runs_expired_before_dispatch_total")

    @property
    def results_reported(self) -> int:
        return self._value("pacer_results_reported_total")

    @property
    def report_failures(self) -> int:
        return self._value("pacer_result_report_failures_total")
