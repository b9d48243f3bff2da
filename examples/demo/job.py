"""The flash-sale job of `examples.flash_sale`, created through the public API with every duration compressed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from examples.demo.clock import SimClock
from examples.flash_sale import ENDPOINTS, Spec
from examples.flash_sale_policies import MONITOR
from pacer.control.v1 import control_service_pb2 as pb

TIMEOUT_MS = 5_000  # an HTTP call's timeout is real time: the shop answers in milliseconds


@dataclass(frozen=True)
class Job:
    """The created job: its id and each endpoint's name by id."""

    job_id: str
    names: dict[str, str]

    def endpoint_id(self, name: str) -> str:
        """The id of the endpoint called `name`."""
        return next(endpoint_id for endpoint_id, found in self.names.items() if found == name)


def create_job(pacer: Any, shop_url: str, clock: SimClock, rules: list[pb.Policy] | None = None) -> Job:
    """Create the job and its 10 endpoints (investigations, recovery and alerts paused) on the shop; then give the
    traffic monitor `rules`, if any (once every endpoint they name exists)."""
    request = pb.CreateJobRequest(name="Black Friday Flash Sale", description=f"demo at {clock.compression:g}x")
    job_id = str(pacer.CreateJob(request).job_id)
    names = {_add(pacer, job_id, spec, shop_url, clock): spec.name for spec in ENDPOINTS}
    job = Job(job_id, names)
    if rules:
        update = pb.UpdateEndpointConfigRequest(endpoint_id=job.endpoint_id(MONITOR), reason="the sale's rules")
        update.policies.rules.extend(rules)
        pacer.UpdateEndpointConfig(update)
    return job


def _add(pacer: Any, job_id: str, spec: Spec, shop_url: str, clock: SimClock) -> str:
    added = pacer.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job_id,
            name=spec.name,
            url=shop_url.rstrip("/") + spec.path,
            method=spec.method,
            headers={"X-Tier": spec.tier},
            baseline=pb.Baseline(interval_ms=clock.real_ms(spec.interval_ms)),
            clamp=pb.Clamp(
                min_interval_ms=clock.real_ms(spec.min_ms) if spec.min_ms else 0,
                max_interval_ms=clock.real_ms(spec.max_ms) if spec.max_ms else 0,
            ),
            timeout_ms=TIMEOUT_MS,
            reason=f"{spec.tier} tier",
        )
    )
    if spec.paused:
        pacer.PauseOrResumeEndpoint(
            pb.PauseOrResumeEndpointRequest(endpoint_id=added.endpoint_id, reason="paused until needed")
        )
    return str(added.endpoint_id)
