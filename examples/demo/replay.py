"""The demo from start to finish: Pacer and the shop up, the job created, the scenario played, the summary checked,
everything stopped.

By default no agent runs: the traffic monitor's policies (`examples/flash_sale_policies.py`) steer the sale inside
Pacer, and a watcher reads what they did from the audit trail. `agent=True` plays the external agent of
`examples/agents/flash_sale_agent.py` instead, with the same checks."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.agents.flash_sale_agent import FlashSaleAgent
from examples.demo import checks
from examples.demo.clock import SimClock
from examples.demo.job import Job, create_job
from examples.demo.play import HOLDBACK_S, Narration, Player
from examples.demo.scenario import AGENT_STEP_S, DURATION_S
from examples.demo.services import LocalPacer, StartError
from examples.demo.shop import DemoShop, Hit
from examples.demo.steering import OneShotRequest, RecordingClient
from examples.demo.timeline import HitNarrator, Timeline
from examples.demo.watcher import PolicyWatcher
from examples.flash_sale_policies import MONITOR, policies
from examples.pacer_client import Pacer
from pacer.control.v1 import control_service_pb2 as pb

Write = Callable[[str], None]
MIN_INTERVAL_MS = 100  # the control plane's floor: the compressed 20 s hint must be allowed
SETTLE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Options:
    """How the demo runs: `compression` simulated seconds per real second; `keep` the folder with the logs."""

    compression: float = 30.0
    keep: bool = False
    agent: bool = False


def pacer_settings(compression: float) -> tuple[dict[str, str], dict[str, str]]:
    """Control and scheduler settings for compressed time: a low interval floor, and claims that look only a few
    simulated seconds ahead, often, so that steering takes effect as promptly as it would at full scale."""
    control = {"PACER_MIN_INTERVAL_MS": str(MIN_INTERVAL_MS)}
    scheduler = {
        "PACER_CLAIM_HORIZON_MS": str(max(20, round(3000 / compression))),
        "PACER_CLAIM_INTERVAL_MS": str(max(10, round(1000 / compression))),
        "PACER_RESULT_FLUSH_MS": "20",
    }
    return control, scheduler


def say(line: str) -> None:
    """Print a line at once, even into a pipe: the timeline is live."""
    print(line, flush=True)


def run(options: Options, write: Write = say) -> int:
    """Run the whole demo; 0 when every check passes, 1 when one fails, 2 when Pacer does not start, 130 when
    interrupted (Ctrl-C or SIGTERM). The folder with the logs is kept after a failure or with `keep`."""
    folder = Path(tempfile.mkdtemp(prefix="pacer-demo-"))
    code: int | None = None  # None: an unexpected error is on its way up
    try:
        code = _run_in(folder, options, write)
    except KeyboardInterrupt:
        write("stopped")
        code = 130
    finally:
        if options.keep or code not in (0, 130):
            write(f"logs and database kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return code


def _run_in(folder: Path, options: Options, write: Write) -> int:
    demo = Demo(LocalPacer(folder, *pacer_settings(options.compression)), write)
    try:
        write(f"starting Pacer (control plane, scheduler, executor) in {folder} ...")
        outcome = demo.play(options.compression, options.agent)
    except StartError as error:
        write(f"Pacer did not start: {error}")
        return 2
    except KeyboardInterrupt:
        write("\ninterrupted: stopping everything")
        raise
    finally:
        exit_codes = demo.close()
    results = [
        *checks.evaluate(outcome.record),
        checks.agent_steps(outcome.agent_steps, outcome.agent_errors, "agent" if options.agent else "watcher"),
        *([checks.policy_outcomes(outcome.policy_counts)] if outcome.policy_counts is not None else []),
        checks.pacer_records(outcome.received, outcome.statuses),
        checks.clean_stop(exit_codes),
    ]
    return _summary(results, write)


@dataclass(frozen=True)
class Outcome:
    """What a play left: the record to check, the run ids the shop received, Pacer's run statuses by id, how many
    steps (of the agent, or of the policy watcher) ran and which failed, and the rules' outcomes (None with the
    agent)."""

    record: checks.Record
    received: list[str]
    statuses: dict[str, str]
    agent_steps: int
    agent_errors: list[str]
    policy_counts: list[pb.PolicyCount] | None = None


@dataclass
class Demo:
    """Pacer, the shop and the client of one demo, closed in an order that lets every claimed run finish."""

    pacer: LocalPacer
    write: Write
    shop: DemoShop | None = None
    client: Pacer | None = None

    def play(self, compression: float, with_agent: bool = False) -> Outcome:
        """Start Pacer and the shop, create the job and play the scenario to its end, steered by the traffic
        monitor's policies (or by the agent); raises StartError."""
        self.pacer.start()
        self.client = Pacer(self.pacer.control_addr, self.pacer.api_key())
        clock = SimClock.starting_now(compression)
        timeline = Timeline(self.write)
        shop = self.shop = DemoShop(clock, on_hit=HitNarrator(timeline)).start()
        rules = None if with_agent else policies(compression)
        job = create_job(self.client, shop.url, clock, rules)
        _header(self.pacer, shop, job, clock, self.write, with_agent)
        if rules is None:
            recording = RecordingClient(self.client, clock)
            agent = FlashSaleAgent(recording, job.job_id, clock.wall, time_scale=compression)
            steps: Narration | PolicyWatcher = Narration(agent, recording, timeline, clock)
        else:
            steps = PolicyWatcher(self.client, job, clock, timeline, rules, shop.hits)
        holdback_s = HOLDBACK_S if isinstance(steps, Narration) else HOLDBACK_S + AGENT_STEP_S
        player = Player(steps, clock, timeline, holdback_s)
        player.play()
        self.write("")
        if isinstance(steps, Narration):
            one_shots = steps.client.one_shots
            decisions = [(clock.sim_s(moment), what) for moment, what in steps.agent.decisions]
        else:
            steps.step()  # what the rules did in the last seconds
            one_shots, decisions = steps.one_shots, steps.decisions
        hits = [hit for hit in shop.hits() if hit.sim_s < DURATION_S]  # Pacer calls on until it stops
        received = [hit.run_id for hit in hits]
        statuses = settled_statuses(self.client, job.job_id, received)
        record = _record(hits, one_shots, job, decisions)
        counts = None if rules is None else _policy_counts(self.client, job)
        return Outcome(record, received, statuses, player.steps, player.errors, counts)

    def close(self) -> dict[str, int]:
        """Stop the services (scheduler first: it dispatches what it claimed while the executor and the shop are
        still up), then the shop; returns the services' exit codes."""
        with signals_ignored():  # a second Ctrl-C must not leave services running
            exit_codes = self.pacer.stop()
        if self.client is not None:
            self.client.close()
        if self.shop is not None:
            self.shop.stop()
        return exit_codes


@contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for the block."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record(
    hits: list[Hit], one_shots: list[OneShotRequest], job: Job, decisions: list[tuple[float, str]]
) -> checks.Record:
    """Hit times by endpoint, decisions and one-shot requests, in simulated seconds."""
    times: dict[str, list[float]] = {}
    for hit in hits:
        times.setdefault(hit.endpoint, []).append(hit.sim_s)
    asked: dict[str, list[OneShotRequest]] = {}
    for request in one_shots:
        asked.setdefault(job.names[request.endpoint_id], []).append(request)
    return checks.Record({name: sorted(found) for name, found in times.items()}, list(decisions), asked)


def _policy_counts(pacer: Any, job: Job) -> list[pb.PolicyCount]:
    """How often each rule of the traffic monitor fired, was skipped in its cooldown, or failed, over the sale."""
    request = pb.SummarizeEndpointHealthRequest(endpoint_id=job.endpoint_id(MONITOR), window_hours=1)
    return list(pacer.SummarizeEndpointHealth(request).policy_counts)


def settled_statuses(pacer: Any, job_id: str, received: list[str]) -> dict[str, str]:
    """Every run of the job by id with its status, once each received run's result is recorded (or a deadline)."""
    give_up = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        statuses = run_statuses(pacer, job_id)
        if all(statuses.get(run_id) == "SUCCESS" for run_id in received) or time.monotonic() > give_up:
            return statuses
        time.sleep(0.1)


def run_statuses(pacer: Any, job_id: str) -> dict[str, str]:
    """Every run of the job in Pacer's history, by id, with its status name (`SUCCESS`, `RUNNING`, ...)."""
    statuses: dict[str, str] = {}
    offset = 0
    while page := pacer.ListRuns(pb.ListRunsRequest(job_id=job_id, limit=500, offset=offset)).runs:
        statuses.update({run.run_id: pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_") for run in page})
        offset += len(page)
    return statuses


def _header(pacer: LocalPacer, shop: DemoShop, job: Job, clock: SimClock, write: Write, with_agent: bool) -> None:
    real_s = clock.real_s(DURATION_S)
    steering = (
        f"  agent   examples/agents/flash_sale_agent.py every {AGENT_STEP_S} s, through the public gRPC API\n"
        if with_agent
        else f"  rules   {len(policies())} policies on {MONITOR} (examples/flash_sale_policies.py), applied by Pacer; "
        f"no agent runs\n"
    )
    who = "agent = a steering decision" if with_agent else "policy = what a rule changed (from the audit trail)"
    write(
        f"\nPacer flash-sale demo: {DURATION_S // 60} simulated minutes at {clock.compression:g}x "
        f"(about {real_s:.0f} s of real time)\n"
        f"  Pacer   control plane {pacer.control_addr}, scheduler {pacer.scheduler_addr}, one executor; SQLite\n"
        f"  shop    {shop.url} (metrics on /metrics/*, recovery and alerts on /recover/* and /alert/*)\n"
        f"  job     {job.job_id}: 10 endpoints, every duration divided by {clock.compression:g}\n"
        f"{steering}"
        f"Times are simulated mm:ss; phase = the shop's metrics change, {who}, shop = a call the shop received.\n"
    )


def _summary(results: list[checks.Check], write: Write) -> int:
    write("Summary (simulated seconds)")
    for check in results:
        write(f"  {'PASS' if check.passed else 'FAIL'}  {check.subject:<26} {check.detail}")
    failed = [check for check in results if not check.passed]
    if failed:
        write(f"\n{len(failed)} of {len(results)} checks FAILED")
        return 1
    write(f"\nall {len(results)} checks PASS")
    return 0
