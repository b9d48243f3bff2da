"""The seed's flash-sale monitoring job: 10 endpoints in 4 tiers, set up and steered through the public API.

    .venv/bin/python -m examples.flash_sale setup [--target http://127.0.0.1:8000]
    .venv/bin/python -m examples.flash_sale steer JOB_ID      # one agent decision of each kind, printed as it goes

Health checks run on a baseline; investigations stay paused until needed; recovery actions and alerts are paused
one-shot endpoints whose min clamp is their cooldown ("fire once, then cool down").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from examples.pacer_client import Pacer
from pacer.control.v1 import control_service_pb2 as pb

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Spec:
    tier: str
    name: str
    path: str
    interval_ms: int
    min_ms: int = 0
    max_ms: int = 0
    paused: bool = False
    method: str = "GET"


ENDPOINTS = (
    Spec("health", "traffic-monitor", "/metrics/traffic", MINUTE_MS, min_ms=20_000, max_ms=5 * MINUTE_MS),
    Spec("health", "order-health", "/metrics/orders", 2 * MINUTE_MS),
    Spec("health", "inventory-check", "/metrics/inventory", 3 * MINUTE_MS),
    Spec("investigation", "slow-page-analyzer", "/investigate/pages", 50_000, paused=True),
    Spec("investigation", "query-tracer", "/investigate/queries", 70_000, paused=True),
    Spec(
        "recovery", "cache-warm-up", "/recover/cache", 60 * MINUTE_MS, min_ms=10 * MINUTE_MS, paused=True, method="POST"
    ),
    Spec(
        "recovery", "scale-workers", "/recover/scale", 60 * MINUTE_MS, min_ms=15 * MINUTE_MS, paused=True, method="POST"
    ),
    Spec("alert", "ops-chat", "/alert/ops", 60 * MINUTE_MS, min_ms=10 * MINUTE_MS, paused=True, method="POST"),
    Spec("alert", "support-chat", "/alert/support", 60 * MINUTE_MS, min_ms=15 * MINUTE_MS, paused=True, method="POST"),
    Spec("alert", "on-call-page", "/alert/page", 240 * MINUTE_MS, min_ms=120 * MINUTE_MS, paused=True, method="POST"),
)


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def shown(value: Timestamp) -> str:
    return value.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S") if value.seconds else "-"


def setup(pacer: Pacer, target: str) -> str:
    """Create the job and its 10 endpoints; returns the job id."""
    job = pacer.CreateJob(pb.CreateJobRequest(name="Black Friday Flash Sale", description="flash-sale monitoring"))
    for spec in ENDPOINTS:
        added = pacer.AddEndpointToJob(
            pb.AddEndpointToJobRequest(
                job_id=job.job_id,
                name=spec.name,
                url=target.rstrip("/") + spec.path,
                method=spec.method,
                headers={"X-Tier": spec.tier},
                baseline=pb.Baseline(interval_ms=spec.interval_ms),
                clamp=pb.Clamp(min_interval_ms=spec.min_ms, max_interval_ms=spec.max_ms),
                timeout_ms=10_000,
                reason=f"{spec.tier} tier",
            )
        )
        if spec.paused:
            pacer.PauseOrResumeEndpoint(
                pb.PauseOrResumeEndpointRequest(endpoint_id=added.endpoint_id, reason="paused until needed")
            )
        print(f"{spec.tier:<14} {spec.name:<20} {added.endpoint_id}")
    print(f"job {job.job_id}")
    return str(job.job_id)


def steer(pacer: Pacer, job_id: str) -> None:
    """One decision of each kind an agent makes during the sale, printed as it goes."""
    endpoints = {
        e.name: e.endpoint_id for e in pacer.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    }
    now = datetime.now(UTC)
    hint = pacer.ApplyIntervalHint(
        pb.ApplyIntervalHintRequest(
            endpoint_id=endpoints["traffic-monitor"], interval_ms=20_000, ttl_minutes=20, reason="traffic 5x baseline"
        )
    )
    print(f"tighten traffic-monitor to 20 s until {shown(hint.hint_expires_at)}, next run {shown(hint.next_run_at)}")
    resumed = pacer.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=endpoints["slow-page-analyzer"], resume=True, reason="pages slow")
    )
    print(f"activate slow-page-analyzer, next run {shown(resumed.next_run_at)}")
    shot = pacer.ScheduleOneShotRun(
        pb.ScheduleOneShotRunRequest(
            endpoint_id=endpoints["cache-warm-up"], run_at=stamp(now + timedelta(seconds=30)), reason="page load 3.2 s"
        )
    )
    print(f"cache-warm-up one-shot at {shown(shot.scheduled_for)}")
    update = pacer.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=endpoints["order-health"], timeout_ms=5_000, reason="fail fast")
    )
    print(f"order-health timeout 5 s, next run {shown(update.next_run_at)}")
    reset = pacer.ResetFailureCount(
        pb.ResetFailureCountRequest(endpoint_id=endpoints["inventory-check"], reason="fixed")
    )
    print(f"inventory-check failures reset to {reset.failure_count}")
    cleared = pacer.ClearAdaptiveHints(
        pb.ClearAdaptiveHintsRequest(endpoint_id=endpoints["traffic-monitor"], reason="sale over")
    )
    print(f"clear traffic-monitor hints, back to baseline: next run {shown(cleared.next_run_at)}")
    health = pacer.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=endpoints["traffic-monitor"]))
    counts = f"{health.success_count} ok, {health.failure_count} failed, streak {health.failure_streak}"
    print(f"traffic-monitor health: {counts}")
    runs = pacer.ListRuns(pb.ListRunsRequest(job_id=job_id, limit=5))
    print(f"{runs.total} runs so far")
    if runs.runs:
        detail = pacer.GetRunDetails(pb.GetRunDetailsRequest(run_id=runs.runs[0].run_id)).run
        print(f"latest run {detail.run_id}: {pb.RunStatus.Name(detail.status)} in {detail.duration_ms} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("setup", help="create the job and its endpoints")
    make.add_argument("--target", default="http://127.0.0.1:8000", help="base URL of the shop being monitored")
    act = commands.add_parser("steer", help="steer a job created by setup")
    act.add_argument("job_id")
    args = parser.parse_args()
    pacer = Pacer()
    if args.command == "setup":
        setup(pacer, args.target)
    else:
        steer(pacer, args.job_id)
    pacer.close()


if __name__ == "__main__":
    main()
