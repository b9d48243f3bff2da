"""Everything the control plane measures, declared in one place on the registry its composition root made.

Served at `/metrics` (PACER_METRICS_ADDR); docs/operations.md lists every metric and what to alert on.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from pacer_common import runs
from pacer_common.runs import RunStatus
from pacer_common.telemetry import GrpcMetrics, grpc_metrics
from pacer_common.transitions import MISSED_OUTAGE, MISSED_OVERRUN

log = logging.getLogger("pacer.control.metrics")

RUN_STATUSES = runs.FINAL
MISS_REASONS = (MISSED_OVERRUN, MISSED_OUTAGE)
ENDPOINT_COUNT_CACHE_S = 10.0
POLICY_OUTCOMES = ("fired", "skipped_cooldown", "error")


class ControlMetrics:
    """The control plane's own metrics and its gRPC server metrics, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.grpc_server: GrpcMetrics = grpc_metrics(registry, "server")
        self.runs = Counter(
            "pacer_runs_total",
            "Runs settled with a final status, by status; LOST runs are found by the reaper when a lease expires.",
            ["status"],
            registry=registry,
        )
        self.leases_expired = Counter(
            "pacer_leases_expired_total",
            "Leases that expired without a result (each one settles its run as LOST).",
            registry=registry,
        )
        self.vanished = Counter(
            "pacer_runs_vanished_total",
            "Runs settled LOST at once because the executor running them vanished (they may have reached the target).",
            registry=registry,
        )
        self.sessions_ended = Counter(
            "pacer_scheduler_sessions_ended_total",
            "Scheduler sessions ended because their heartbeats stopped (a scheduler died or was cut off).",
            registry=registry,
        )
        self.runs_released = Counter(
            "pacer_runs_released_total",
            "Runs of an ended scheduler session that never began: released and due again at once.",
            registry=registry,
        )
        self.missed = Counter(
            "pacer_runs_missed_total",
            "Scheduled slots that passed without a run (coalesced into one later run), counted when a run settles, by "
            "reason: overrun (the run before them lasted longer than the step: the endpoint is slower than its "
            "cadence) or outage (Pacer could not keep up, or the run was lost). Paused time and backoff never count.",
            ["reason"],
            registry=registry,
        )
        # Bounded by the number of tenants, which operators create.
        self.tenant_runs = Counter(
            "pacer_tenant_runs",
            "Runs settled, by tenant and final status (as pacer_runs_total).",
            ["tenant", "status"],
            registry=registry,
        )
        self.pruned = Counter(
            "pacer_runs_pruned_total",
            "Finished runs deleted because they were older than their tenant's retention (PACER_RUN_RETENTION_DAYS).",
            registry=registry,
        )
        self.policy_evaluations = Counter(
            "pacer_policy_evaluations_total",
            "Endpoint rules whose condition held on a recorded run (or could not be evaluated), by outcome: fired, "
            "skipped_cooldown, or error (the condition or an action failed, or the condition overran its deadline).",
            ["outcome"],
            registry=registry,
        )
        self.policy_dropped = Counter(
            "pacer_policy_runs_dropped_total",
            "Recorded runs whose rules were not evaluated because the evaluation queue was full.",
            registry=registry,
        )
        for outcome in POLICY_OUTCOMES:
            self.policy_evaluations.labels(outcome)
        for status in RUN_STATUSES:
            self.runs.labels(status)  # every series exists from the start, so rate() and alerts see zeros
        for reason in MISS_REASONS:
            self.missed.labels(reason)

    def runs_settled(self, by_status: Mapping[RunStatus, int]) -> None:
        """Count runs a result batch settled."""
        for status, count in by_status.items():
            self.runs.labels(status).inc(count)

    def tenant_runs_settled(self, by_tenant: Mapping[tuple[str, RunStatus], int]) -> None:
        """Count runs settled, by tenant and status."""
        for (tenant, status), count in by_tenant.items():
            self.tenant_runs.labels(tenant, status).inc(count)

    def runs_missed(self, by_reason: Mapping[str, int]) -> None:
        """Count slots found missed while settling runs, by reason (`overrun` or `outage`)."""
        for reason, count in by_reason.items():
            if count:
                self.missed.labels(reason).inc(count)

    def runs_lost(self, count: int, tenants: Sequence[str] = ()) -> None:
        """Count runs the reaper settled as LOST (`tenants`: the tenant of each, for the per-tenant series)."""
        self.leases_expired.inc(count)
        self._lost(count, tenants)

    def runs_vanished(self, count: int, tenants: Sequence[str] = ()) -> None:
        """Count runs settled LOST because their executor vanished (`tenants`: the tenant of each)."""
        self.vanished.inc(count)
        self._lost(count, tenants)

    def _lost(self, count: int, tenants: Sequence[str]) -> None:
        self.runs.labels(RunStatus.LOST).inc(count)
        self.tenant_runs_settled(collections.Counter((tenant, RunStatus.LOST) for tenant in tenants))

    def policy_evaluated(self, outcome: str) -> None:
        """One rule's outcome on one run: `outcome` is a POLICY_OUTCOMES value."""
        self.policy_evaluations.labels(outcome).inc()

    def runs_pruned(self, count: int) -> None:
        """Count runs the retention sweep deleted."""
        self.pruned.inc(count)

    def session_ended(self, released: int) -> None:
        """Count a scheduler session ended for silence, and the runs it released."""
        self.sessions_ended.inc()
        self.runs_released.inc(released)


def watch_database(
    registry: CollectorRegistry,
    engine: Engine,
    count_endpoints: Callable[[], Mapping[str, int]],
    cache_s: float = ENDPOINT_COUNT_CACHE_S,
) -> None:
    """Register the metrics read from the database at scrape time: pool connections and endpoints by state."""
    registry.register(PoolCollector(engine))
    registry.register(EndpointCollector(count_endpoints, cache_s))


class PoolCollector:
    """`pacer_db_pool_connections{state=in_use|idle}`, read from the SQLAlchemy pool at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        return [_pool_family()]

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.pool
        if not isinstance(pool, QueuePool):  # other pools (in-memory SQLite) keep no count
            return
        family = _pool_family()
        family.add_metric(["in_use"], pool.checkedout())
        family.add_metric(["idle"], pool.checkedin())
        yield family


def _pool_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "pacer_db_pool_connections",
        "Database connections held by this control replica: in_use (checked out) or idle (pooled, open).",
        labels=["state"],
    )


class EndpointCollector:
    """`pacer_endpoints{state=active|paused|deleted}`: one counting query per `cache_s` at most, at scrape time.

    Scrapes run on the metrics server's threads, so the cache is locked. When the database cannot answer the
    family is left out of the scrape (and the failure logged) rather than failing the whole scrape.
    """

    def __init__(
        self,
        count: Callable[[], Mapping[str, int]],
        cache_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._counts: Mapping[str, int] | None = None
        self._counted_at = 0.0

    def describe(self) -> list[Metric]:
        return [_endpoint_family()]

    def collect(self) -> Iterator[Metric]:
        counts = self._current()
        if counts is None:
            return
        family = _endpoint_family()
        for state, value in counts.items():
            family.add_metric([state], value)
        yield family

    def _current(self) -> Mapping[str, int] | None:
        with self._lock:
            if self._counts is None or self._monotonic() - self._counted_at >= self._cache_s:
                try:
                    self._counts = self._count()
                except SQLAlchemyError as error:
                    log.warning(
                        "endpoints not counted", extra={"event": "metrics.count_failed", "error": type(error).__name__}
                    )
                    self._counts = None
                    return None
                self._counted_at = self._monotonic()
            return self._counts


def _endpoint_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "pacer_endpoints",
        "Endpoints by state: active, paused (paused or in an archived job) and deleted; refreshed every ~10 s.",
        labels=["state"],
    )
