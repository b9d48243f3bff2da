"""Everything the executor measures, declared in one place on the registry its composition root made.

Served at `/metrics` (PACER_METRICS_ADDR); docs/operations.md lists every metric and what to alert on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pacer_common.telemetry import GrpcMetrics, grpc_metrics

# From a millisecond to the longest timeout an endpoint may have (300 s).
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OUTCOMES = ("SUCCESS", "FAILURE", "TIMEOUT", "BLOCKED")


class ExecutorMetrics:
    """The executor's metrics on `registry` (a private one when None, as in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.grpc_client: GrpcMetrics = grpc_metrics(self.registry, "client")
        self.grpc_server: GrpcMetrics = grpc_metrics(self.registry, "server")
        self.runs_in_flight = Gauge(
            "pacer_runs_in_flight",
            "Runs this executor is performing now (each holds one slot).",
            registry=self.registry,
        )
        self.schedulers_connected = Gauge(
            "pacer_scheduler_streams_connected",
            "Schedulers this executor has an open stream to.",
            registry=self.registry,
        )
        self.results_unacked = Gauge(
            "pacer_results_unacknowledged",
            "Run results kept until a scheduler confirms the control plane recorded them (PACER_MAX_UNACKED_RESULTS "
            "bounds them: at the bound no new work is taken).",
            registry=self.registry,
        )
        self.runs_released = Counter(
            "pacer_runs_released_total",
            "Work items given back unbegun with Released while draining, for the scheduler to dispatch elsewhere.",
            registry=self.registry,
        )
        self.runs_held = Counter(
            "pacer_runs_held_total",
            "Runs begun whose scheduler stream broke before their result was confirmed: they go on and are "
            "reported Held on another stream.",
            registry=self.registry,
        )
        self.runs_dropped = Counter(
            "pacer_runs_dropped_total",
            "Work items never begun because their scheduler stream broke (that scheduler reports them vanished).",
            registry=self.registry,
        )
        self.results_resent = Counter(
            "pacer_results_resent_total",
            "Results sent again on another stream because the one that carried them broke before confirming them.",
            registry=self.registry,
        )
        self.retries = Counter(
            "pacer_run_retries_total",
            "Attempts made again within a run after a transient failure (timeout, no connection, 502/503/504), as "
            "its endpoint's retry policy allows.",
            registry=self.registry,
        )
        self._http_seconds = Histogram(
            "pacer_http_duration_seconds",
            "Duration of each HTTP exchange (every redirect hop included; each attempt of a retried run), by outcome.",
            ["outcome"],
            buckets=HTTP_BUCKETS_S,
            registry=self.registry,
        )
        self._refusals = Counter(
            "pacer_egress_refusals_total",
            "Runs the egress policy refused (BLOCKED), by the kind of destination that was refused.",
            ["reason_category"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self._http_seconds.labels(outcome)  # every series exists from the start, so alerts see zeros

    def run_finished(self, outcome: str, seconds: float) -> None:
        """One run's exchange ended with `outcome` after `seconds`."""
        self._http_seconds.labels(outcome).observe(seconds)

    def egress_refused(self, reason_category: str) -> None:
        self._refusals.labels(reason_category).inc()
