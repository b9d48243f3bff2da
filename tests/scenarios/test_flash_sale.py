"""The seed's flash-sale scenario, 40 simulated minutes, on the real control service and its stores.

A fake clock drives time second by second; each second the due runs are claimed through the real claim path and
answered by a fake shop whose metrics follow the scenario's phases. It is steered two ways, with the same run times:
by the rule-based agent of `examples/agents/flash_sale_agent.py`, which every 10 s reads results through the public
API and steers with the public actions, and with no agent at all, by the traffic monitor's policies
(`examples/flash_sale_policies.py`), which Pacer applies each time one of its runs is recorded.
"""

from __future__ import annotations

import functools
import itertools
import json
from datetime import timedelta

import pytest

from examples.agents.flash_sale_agent import FlashSaleAgent
from examples.flash_sale import ENDPOINTS
from examples.flash_sale_policies import MONITOR, policies
from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.pipeline import RunResult
from tests.support.harness import Harness, dt
from tests.support.polling import wait_for

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


def run_scenario(harness: Harness, with_agent: bool) -> tuple[dict[str, list[pb.RunSummary]], list[str]]:
    """Play the sale; the runs of each endpoint, and what steered it (the agent's decisions, or the actions the
    rules took as the audit trail records them: `policy:<rule> <action> <endpoint>`)."""
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
    if not with_agent:
        monitor = next(endpoint_id for endpoint_id, name in names.items() if name == MONITOR)
        rules = pb.UpdateEndpointConfigRequest(endpoint_id=monitor)
        rules.policies.rules.extend(policies())
        harness.a.UpdateEndpointConfig(rules)
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
        if with_agent and second % 10 == 0:
            agent.step()
        elif not with_agent:
            evaluated(harness, [run.run_id for run in claimed if names[run.endpoint_id] == MONITOR])
    runs: dict[str, list[pb.RunSummary]] = {name: [] for name in names.values()}
    offset = 0
    while page := harness.a.ListRuns(pb.ListRunsRequest(job_id=job_id, limit=500, offset=offset)).runs:
        for run in page:
            runs[names[run.endpoint_id]].append(run)
        offset += len(page)
    steered = [what for _, what in agent.decisions] if with_agent else policy_actions(harness, job_id, names)
    return {name: sorted(found, key=lambda r: dt(r.scheduled_for)) for name, found in runs.items()}, steered


def evaluated(harness: Harness, run_ids: list[str]) -> None:
    """Wait until Pacer has evaluated the rules on each of the monitor's runs (off the result path, at once): every
    snapshot makes one of each pair of the monitor's rules hold, so a run with no firing is not evaluated yet."""
    for run_id in run_ids:
        wait_for(functools.partial(_fired, harness, run_id), 10, f"the rules on run {run_id}", 0.002)


def _fired(harness: Harness, run_id: str) -> bool:
    return bool(harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run.policy_firings)


def policy_actions(harness: Harness, job_id: str, names: dict[str, str]) -> list[str]:
    """The actions the rules took, oldest first, as `policy:<rule> <action> <endpoint>`."""
    records: list[pb.AuditRecord] = []
    request = pb.ListAuditRecordsRequest(job_id=job_id, page_size=100)
    while True:
        page = harness.a.ListAuditRecords(request)
        records += page.records
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    rules = [r for r in reversed(records) if r.actor.startswith("policy:")]
    return [f"{r.actor} {r.action} {names.get(r.target_id, r.target_id)}" for r in rules]


@pytest.fixture(params=["agent", "policies"])
def outcome(request: pytest.FixtureRequest, harness: Harness) -> tuple[dict[str, list[int]], list[str]]:
    """Seconds after the start at which each endpoint ran, and what steered the sale."""
    start = harness.clock.now()
    runs, steered = run_scenario(harness, with_agent=request.param == "agent")
    seconds = {
        name: [int((dt(r.scheduled_for) - start).total_seconds()) for r in found] for name, found in runs.items()
    }
    assert all(r.status == pb.RUN_STATUS_SUCCESS for found in runs.values() for r in found)
    return seconds, steered


def gaps(seconds: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(seconds)]


def test_the_flash_sale_unfolds_exactly_as_steered(outcome: tuple[dict[str, list[int]], list[str]]) -> None:
    seconds, steered = outcome
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
    assert {"traffic-monitor: back to baseline", "policy:calm ClearAdaptiveHints traffic-monitor"} & set(steered)
