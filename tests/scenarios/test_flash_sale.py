"""The seed's flash-sale scenario, 40 simulated minutes, on the real control service and its stores.

A fake clock drives time second by second; each second the due runs are claimed through the real claim path and
answered by a fake shop whose metrics follow the scenario's phases; every 10 s the rule-based agent of
`examples/agents/flash_sale_agent.py` reads results through the public API and steers with the public actions.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest

from examples.agents.flash_sale_agent import FlashSaleAgent
from examples.flash_sale import ENDPOINTS
from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.pipeline import RunResult
from tests.support.harness import Harness, dt

MINUTES = 40
# Phases by minute: (first minute, traffic/min, page load ms, orders/min, db query ms)
PHASES = (
    (0, 1000, 800, 40, 120),  # baseline
    (5, 5000, 1800, 180, 280),  # surge
    (9, 5500, 3200, 160, 850),  # strain
    (13, 6000, 4500, 120, 1200),  # critical
    (21, 1500, 1100, 50, 180),  # recovery
)
HEALTH = {"traffic-monitor", "order-health", "inventory-check"}


def metrics_at(second: int) -> dict[str, int]:
    _, traffic, page, orders, query = next(p for p in reversed(PHASES) if p[0] <= second // 60)
    return {"traffic_per_min": traffic, "page_load_ms": page, "orders_per_min": orders, "db_query_ms": query}


def run_scenario(harness: Harness) -> tuple[dict[str, list[pb.RunSummary]], FlashSaleAgent]:
    start = harness.clock.now()
    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="Black Friday Flash Sale")).job_id
    names = {}
    for spec in ENDPOINTS:
        added = harness.a.AddEndpointToJob(
            pb.AddEndpointToJobRequest(
                job_id=job_id,
                name=spec.name,
                url=f"https://shop.example.com{spec.path}",
                method=spec.method,
                baseline=pb.Baseline(interval_ms=spec.interval_ms),
                clamp=pb.Clamp(min_interval_ms=spec.min_ms, max_interval_ms=spec.max_ms),
            )
        )
        names[added.endpoint_id] = spec.name
        if spec.paused:
            harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=added.endpoint_id))
    agent = FlashSaleAgent(harness.a, job_id, harness.clock.now)
    for second in range(1, MINUTES * 60):
        harness.clock.set(start + timedelta(seconds=second))
        claimed = harness.pipeline.claim_due(harness.clock.now(), 0, 100, 30_000)
        results = [
            RunResult(
                run_id=run.run_id,
                status="SUCCESS",
                started_at=run.scheduled_for,
                finished_at=run.scheduled_for + timedelta(milliseconds=40),
                duration_ms=40,
                http_status=200,
                response_body=json.dumps(metrics_at(int((run.scheduled_for - start).total_seconds())))
                if names[run.endpoint_id] in HEALTH
                else "ok",
            )
            for run in claimed
        ]
        harness.pipeline.record_results(results, harness.clock.now())
        if second % 10 == 0:
            agent.step()
    runs: dict[str, list[pb.RunSummary]] = {name: [] for name in names.values()}
    offset = 0
    while page := harness.a.ListRuns(pb.ListRunsRequest(job_id=job_id, limit=500, offset=offset)).runs:
        for run in page:
            runs[names[run.endpoint_id]].append(run)
        offset += len(page)
    return {name: sorted(found, key=lambda r: dt(r.scheduled_for)) for name, found in runs.items()}, agent


@pytest.fixture
def outcome(harness: Harness) -> tuple[dict[str, list[int]], FlashSaleAgent]:
    """Seconds after the start at which each endpoint ran, and the agent."""
    start = harness.clock.now()
    runs, agent = run_scenario(harness)
    seconds = {
        name: [int((dt(r.scheduled_for) - start).total_seconds()) for r in found] for name, found in runs.items()
    }
    assert all(r.status == pb.RUN_STATUS_SUCCESS for found in runs.values() for r in found)
    return seconds, agent


def gaps(seconds: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(seconds)]


def test_the_flash_sale_unfolds_exactly_as_steered(outcome: tuple[dict[str, list[int]], FlashSaleAgent]) -> None:
    seconds, agent = outcome
    monitor = seconds["traffic-monitor"]
    # Baseline cadence until the surge is seen at 05:00, 20 s through the sale, 60 s once recovery is seen at 21:00.
    assert [s for s in monitor if s <= 300] == [60, 120, 180, 240, 300]
    assert [s for s in monitor if 300 <= s <= 1260] == list(range(300, 1261, 20))
    assert set(gaps([s for s in monitor if 780 <= s <= 1260])) == {20}  # the whole critical phase
    assert [s for s in monitor if s >= 1260] == list(range(1260, 2400, 60))
    # Investigations run only while their condition holds (seen at 09:00, cleared at 21:00), at their baseline.
    assert seconds["slow-page-analyzer"] == list(range(540 + 50, 1260, 50))
    assert seconds["query-tracer"] == list(range(540 + 70, 1260, 70))
    # Remediation fires at once, then only after its cooldown while the condition lasts; the queued run after
    # recovery is dropped.
    assert seconds["cache-warm-up"] == [540, 540 + 600]
    assert seconds["scale-workers"] == [540]
    # Alerts: ops and support chat when critical is seen, the on-call page once after 5 minutes of critical.
    assert seconds["ops-chat"] == [780]
    assert seconds["support-chat"] == [780]
    assert seconds["on-call-page"] == [780 + 300]
    totals = {name: len(found) for name, found in seconds.items()}
    assert totals == {
        "traffic-monitor": 5 + 48 + 18,  # 60 s to 05:00, 20 s to 21:00, 60 s to the end
        "order-health": 19,
        "inventory-check": 13,
        "slow-page-analyzer": 14,
        "query-tracer": 10,
        "cache-warm-up": 2,
        "scale-workers": 1,
        "ops-chat": 1,
        "support-chat": 1,
        "on-call-page": 1,
    }
    assert "traffic-monitor: back to baseline" in {what for _, what in agent.decisions}
