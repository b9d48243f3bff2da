"""A rule-based agent for the seed's flash-sale scenario: it reads run results through Pacer's public API and
steers with the public actions only.

Every health endpoint answers with a snapshot of the shop's metrics as JSON:
`{"traffic_per_min": 6000, "page_load_ms": 4500, "orders_per_min": 120, "db_query_ms": 1200}`. The agent reads the
newest snapshot and applies its rules:

- traffic at 5000/min or more: tighten the traffic monitor to 20 s; below 2000/min: clear the hint (back to 60 s);
- page load at 3000 ms or more: the slow-page analyzer runs; database queries at 800 ms or more: the query tracer
  runs; otherwise each stays paused;
- remediation (cache warm-up when pages are slow, scale workers when orders fall under traffic) and alerts (ops chat
  when pages are critical, support chat when orders collapse, on-call page after 5 minutes of critical) are one-shot
  runs of paused endpoints; their min clamp is the cooldown, so asking again during it only queues the next run, and
  a queued run is cleared once its condition is gone.

`time_scale` compresses the agent's own durations for a sped-up replay (`examples.demo`): with 30 the 20 s hint
becomes 667 ms, its 60-minute TTL 2 minutes (never under the API's 1 minute) and the on-call delay 10 s. The
default 1 keeps real time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from pacer.control.v1 import control_service_pb2 as pb

HEALTH = ("traffic-monitor", "order-health", "inventory-check")
ON_CALL_AFTER = timedelta(minutes=5)
SURGE_INTERVAL_MS = 20_000
HINT_TTL_MINUTES = 60


@dataclass(frozen=True)
class Snapshot:
    traffic_per_min: int
    page_load_ms: int
    orders_per_min: int
    db_query_ms: int

    @property
    def surging(self) -> bool:
        return self.traffic_per_min >= 5000

    @property
    def calm(self) -> bool:
        return self.traffic_per_min < 2000

    @property
    def pages_slow(self) -> bool:
        return self.page_load_ms >= 3000

    @property
    def pages_critical(self) -> bool:
        return self.page_load_ms >= 4000

    @property
    def database_slow(self) -> bool:
        return self.db_query_ms >= 800

    @property
    def orders_falling(self) -> bool:
        return self.surging and self.orders_per_min < 170

    @property
    def orders_collapsed(self) -> bool:
        return self.surging and self.orders_per_min <= 120


@dataclass
class FlashSaleAgent:
    """Steers one flash-sale job. `client` calls ControlService RPCs by name; `now` is the current time; its own
    durations (hint interval and TTL, on-call delay) are divided by `time_scale`."""

    client: Any
    job_id: str
    now: Callable[[], datetime]
    log: Callable[[str], None] = lambda line: None
    time_scale: float = 1.0
    tightened: bool = False
    critical_since: datetime | None = None
    seen_run: str = ""
    snapshot: Snapshot | None = None
    decisions: list[tuple[datetime, str]] = field(default_factory=list)

    def step(self) -> None:
        """Read the newest health result and act on it."""
        snapshot = self._newest_snapshot()
        if snapshot is None:
            return
        endpoints = {
            e.name: e for e in self.client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=self.job_id)).endpoints
        }
        self._cadence(snapshot, endpoints["traffic-monitor"].endpoint_id)
        self._investigate(endpoints["slow-page-analyzer"], snapshot.pages_slow, "pages slow")
        self._investigate(endpoints["query-tracer"], snapshot.database_slow, "database slow")
        self._track_critical(snapshot)
        on_call_due = self.critical_since is not None and self.now() - self.critical_since >= self.on_call_after
        self._one_shot(endpoints["cache-warm-up"], snapshot.pages_slow, "page load high")
        self._one_shot(endpoints["scale-workers"], snapshot.orders_falling, "orders falling under load")
        self._one_shot(endpoints["ops-chat"], snapshot.pages_critical, "pages critical")
        self._one_shot(endpoints["support-chat"], snapshot.orders_collapsed, "orders collapsed")
        self._one_shot(endpoints["on-call-page"], on_call_due, "critical for 5 minutes")

    @property
    def on_call_after(self) -> timedelta:
        """How long pages must stay critical before the on-call page, scaled."""
        return ON_CALL_AFTER / self.time_scale

    @property
    def surge_interval_ms(self) -> int:
        """The traffic monitor's interval during the surge, scaled."""
        return round(SURGE_INTERVAL_MS / self.time_scale)

    @property
    def hint_ttl_minutes(self) -> int:
        """The surge hint's TTL, scaled but at least the API's 1 minute (a longer hint is cleared on calm)."""
        return max(1, round(HINT_TTL_MINUTES / self.time_scale))

    def _newest_snapshot(self) -> Snapshot | None:
        runs = self.client.ListRuns(
            pb.ListRunsRequest(job_id=self.job_id, status=pb.RUN_STATUS_FILTER_SUCCESS, limit=20)
        )
        names = {e.endpoint_id: e.name for e in self._endpoints()}
        newest = next((r for r in runs.runs if names.get(r.endpoint_id) in HEALTH), None)
        if newest is not None and newest.run_id != self.seen_run:
            self.seen_run = newest.run_id
            body = self.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=newest.run_id)).run.response_body
            self.snapshot = Snapshot(**json.loads(body))
        return self.snapshot

    def _endpoints(self) -> list[Any]:
        return list(self.client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=self.job_id)).endpoints)

    def _decide(self, what: str) -> None:
        self.decisions.append((self.now(), what))
        self.log(f"{self.now():%H:%M:%S} {what}")

    def _cadence(self, snapshot: Snapshot, monitor_id: str) -> None:
        if snapshot.surging and not self.tightened:
            self.client.ApplyIntervalHint(
                pb.ApplyIntervalHintRequest(
                    endpoint_id=monitor_id,
                    interval_ms=self.surge_interval_ms,
                    ttl_minutes=self.hint_ttl_minutes,
                    reason="traffic 5x baseline",
                )
            )
            self.tightened = True
            self._decide("traffic-monitor: tighten to 20 s")
        elif snapshot.calm and self.tightened:
            self.client.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=monitor_id, reason="traffic calm"))
            self.tightened = False
            self._decide("traffic-monitor: back to baseline")

    def _investigate(self, endpoint: Any, needed: bool, why: str) -> None:
        if needed and endpoint.paused:
            self.client.PauseOrResumeEndpoint(
                pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint.endpoint_id, resume=True, reason=why)
            )
            self._decide(f"{endpoint.name}: activate ({why})")
        elif not needed and not endpoint.paused:
            self.client.PauseOrResumeEndpoint(
                pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint.endpoint_id, reason="condition cleared")
            )
            self._decide(f"{endpoint.name}: pause")

    def _track_critical(self, snapshot: Snapshot) -> None:
        if snapshot.pages_critical and self.critical_since is None:
            self.critical_since = self.now()
        elif not snapshot.pages_critical:
            self.critical_since = None

    def _one_shot(self, endpoint: Any, wanted: bool, why: str) -> None:
        pending = endpoint.HasField("next_run_at")
        if wanted and not pending:
            run_at = Timestamp()
            run_at.FromDatetime(self.now())
            answer = self.client.ScheduleOneShotRun(
                pb.ScheduleOneShotRunRequest(endpoint_id=endpoint.endpoint_id, run_at=run_at, reason=why)
            )
            self._decide(f"{endpoint.name}: one-shot at {answer.scheduled_for.ToDatetime():%H:%M:%S} ({why})")
        elif not wanted and pending:
            self.client.ClearAdaptiveHints(
                pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint.endpoint_id, reason="condition cleared")
            )
            self._decide(f"{endpoint.name}: drop the queued one-shot")
