"""Everything the scheduler measures, declared in one place on the registry its composition root made.

Served at `/metrics` (PACER_METRICS_ADDR); docs/operations.md lists every metric and what to alert on. The
read-only properties (`dispatched`, `redispatched`, ...) read the counters back for tests and log lines.
"""

from __future__ import annotations

from collections import deque

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

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.grpc_server: GrpcMetrics = grpc_metrics(self.registry, "server")
        self.grpc_client: GrpcMetrics = grpc_metrics(self.registry, "client")
        self.recent_lateness_s: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._declare_dispatch(self.registry)
        self._declare_claims(self.registry)
        self._declare_results(self.registry)

    def _declare_dispatch(self, registry: CollectorRegistry) -> None:
        self._lateness = Histogram(
            "pacer_dispatch_lateness_seconds",
            "Dispatch time minus scheduled time of each run handed to an executor (early runs count as 0).",
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self._dispatched = Counter("pacer_runs_dispatched_total", "Runs handed to an executor.", registry=registry)
        self._redispatched = Counter(
            "pacer_runs_redispatched_total",
            "Runs sent to an executor whose stream ended before it started them, dispatched again.",
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

    # -- recording ----------------------------------------------------------------------------------------------

    def dispatched_late(self, lateness_s: float) -> None:
        """Record one dispatch, `lateness_s` after its due time (negative when early)."""
        self._dispatched.inc()
        self._lateness.observe(max(lateness_s, 0.0))
        self.recent_lateness_s.append(lateness_s)

    def runs_redispatched(self, count: int) -> None:
        self._redispatched.inc(count)

    def run_expired(self) -> None:
        self._expired.inc()

    def executors_changed(self, connected: int, credits: int, in_flight: int) -> None:
        """The dispatcher's state after a change: open streams, their unused credits, runs awaiting a result."""
        self._executors.set(connected)
        self._credits.set(credits)
        self._in_flight.set(in_flight)

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
    def expired(self) -> int:
        return self._value("pacer_runs_expired_before_dispatch_total")

    @property
    def results_reported(self) -> int:
        return self._value("pacer_results_reported_total")

    @property
    def report_failures(self) -> int:
        return self._value("pacer_result_report_failures_total")
