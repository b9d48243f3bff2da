"""QuotaGuard: per-tenant limits on jobs, endpoints and the shortest interval, and a token-bucket rate limit.

Applied inside the control plane, so every front door (gRPC, REST, MCP, CLI) meets the same limits. Counting limits
are checked in the transaction that creates the object (with the tenant's row locked), so a refused request
creates nothing. The rate limit is per control replica: with N replicas a tenant may reach N times the rate.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pacer_common.clock import Clock
from pacer_common.cron import next_cron_time
from pacer_control.catalog import Catalog, quota_exceeded
from pacer_control.settings import ControlSettings

QUOTA_CACHE = timedelta(seconds=5)
CRON_SLOTS_CHECKED = 24


@dataclass(frozen=True)
class Quota:
    """The limits one tenant works under."""

    max_jobs: int = 1000
    max_endpoints: int = 100_000
    min_interval_ms: int = 0  # 0: only the service floor (PACER_MIN_INTERVAL_MS) applies
    rate_per_s: float = 200.0
    burst: int = 1000
    run_retention_days: int = 30  # finished runs older than this are deleted; 0 keeps them for ever


# What a shared installation can live with: one tenant cannot take the executors' capacity from the others
# (1,000 endpoints at a 10 s floor is at most 100 runs/s) nor the control plane's (50 actions/s, bursts of 200).
PRODUCTION = Quota(max_jobs=200, max_endpoints=1000, min_interval_ms=10_000, rate_per_s=50.0, burst=200)
# The embedded profile is one person's machine: room to experiment, one-second cadences included.
EMBEDDED = Quota()


def default_quota(settings: ControlSettings) -> Quota:
    """Every tenant's default limits: the profile's (EMBEDDED with PACER_BOOTSTRAP_DEV, else PRODUCTION), each
    replaced by its PACER_QUOTA_* setting where that is not -1."""
    base = EMBEDDED if settings.bootstrap_dev else PRODUCTION
    given = {
        "max_jobs": settings.quota_max_jobs,
        "max_endpoints": settings.quota_max_endpoints,
        "min_interval_ms": settings.quota_min_interval_ms,
        "rate_per_s": settings.quota_rate_per_s,
        "burst": settings.quota_burst,
        "run_retention_days": settings.run_retention_days,
    }
    return replace(base, **{name: value for name, value in given.items() if value >= 0})


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class QuotaGuard:
    """Decides whether a tenant may act now, and with which limits."""

    def __init__(self, catalog: Catalog, defaults: Quota, clock: Clock) -> None:
        self._catalog = catalog
        self._defaults = defaults
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._cached: dict[str, tuple[datetime, Quota]] = {}

    def quota(self, tenant_id: str) -> Quota:
        """The tenant's limits: its own where set, the service defaults elsewhere (cached for a few seconds)."""
        now = self._clock.now()
        with self._lock:
            hit = self._cached.get(tenant_id)
        if hit is not None and now - hit[0] < QUOTA_CACHE:
            return hit[1]
        row = self._catalog.tenant_quota(tenant_id)
        own = {} if row is None else {k: v for k, v in row.items() if v is not None}
        quota = replace(self._defaults, **own)
        with self._lock:
            self._cached[tenant_id] = (now, quota)
        return quota

    def admit(self, tenant_id: str) -> None:
        """Take one token from the tenant's bucket, or refuse with the time until one is back."""
        quota, now = self.quota(tenant_id), self._clock.now()
        with self._lock:
            bucket = self._buckets.setdefault(tenant_id, _Bucket(float(quota.burst), now))
            elapsed = max(0.0, (now - bucket.at).total_seconds())
            bucket.tokens = min(float(quota.burst), bucket.tokens + elapsed * quota.rate_per_s)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return
            wait_s = (1 - bucket.tokens) / quota.rate_per_s if quota.rate_per_s > 0 else 60.0
        raise quota_exceeded(tenant_id, "rate", f"more than {quota.rate_per_s:g} actions per second", wait_s)

    def check_intervals(self, tenant_id: str, intervals: dict[str, int]) -> None:
        """Refuse intervals (field -> ms; 0 means unset) shorter than the tenant's floor."""
        floor = self.quota(tenant_id).min_interval_ms
        short = [field for field, value in intervals.items() if 0 < value < floor]
        if short:
            raise quota_exceeded(
                tenant_id, "min_interval_ms", f"{', '.join(short)} below the tenant's {floor} ms floor"
            )

    def check_cron(self, tenant_id: str, field: str, expression: str, timezone: str) -> None:
        """Refuse a cron whose slots come closer together than the tenant's floor."""
        floor = timedelta(milliseconds=self.quota(tenant_id).min_interval_ms)
        previous = next_cron_time(expression, timezone, self._clock.now())
        for _ in range(CRON_SLOTS_CHECKED):
            following = next_cron_time(expression, timezone, previous)
            if following - previous < floor:
                raise quota_exceeded(tenant_id, "min_interval_ms", f"{field} fires more often than the tenant's floor")
            previous = following
