"""What the traffic monitor's policies did, read back from Pacer's audit trail: no agent runs, Pacer steers itself.

Every 10 simulated seconds the watcher reads the job's new audit records (`ListAuditRecords`, newest first, paged
back to the last one seen) and keeps those whose actor is a rule (`policy:<rule>`). A rule is level-triggered: it
acts on every run its condition holds on (resuming an active endpoint or pausing a paused one changes nothing), so
the watcher tells only changes: the traffic monitor tightened or back to its baseline, an investigation activated
or paused, a one-shot asked for, a queued one-shot dropped. Each record's action is known from the rule that took
it (the audit trail names the RPC, which is the same for pause and resume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from examples.demo.clock import SimClock
from examples.demo.job import Job
from examples.demo.shop import Hit
from examples.demo.steering import OneShotRequest
from examples.demo.timeline import Timeline
from examples.flash_sale_policies import MONITOR
from pacer.control.v1 import control_service_pb2 as pb

PAGE_SIZE = 100
INVESTIGATIONS = ("slow-page-analyzer", "query-tracer")


@dataclass(frozen=True)
class Acted:
    """One action of a rule: its kind (`interval_hint`, `resume`, ...) on the endpoint named `target`."""

    kind: str
    target: str
    delay_ms: int = 0


def actions_by_rule(rules: list[pb.Policy]) -> dict[tuple[str, str], Acted]:
    """(rule name, target endpoint name) -> what the rule does to it; a rule acts at most once on each target."""
    found = {}
    for rule in rules:
        for action in rule.then:
            target = action.endpoint or MONITOR
            kind = action.WhichOneof("action") or ""
            found[(rule.name, target)] = Acted(kind, target, action.one_shot.delay_ms)
    return found


@dataclass
class PolicyWatcher:
    """Reads the rules' audit records as they come and turns them into decisions and one-shot requests."""

    pacer: Any
    job: Job
    clock: SimClock
    timeline: Timeline
    rules: list[pb.Policy]
    hits: Callable[[], list[Hit]]
    decisions: list[tuple[float, str]] = field(default_factory=list)
    one_shots: list[OneShotRequest] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    tightened: bool = False
    active: set[str] = field(default_factory=set)
    queued: dict[str, float] = field(default_factory=dict)  # endpoint -> simulated second its one-shot is due

    def step(self) -> None:
        """Read the audit records written since the last step and tell what changed."""
        acts = actions_by_rule(self.rules)
        self._forget_fired()
        for record in self._new_records():
            rule = record.actor.removeprefix("policy:")
            target = self.job.names.get(record.target_id, "")
            acted = acts.get((rule, target))
            if record.actor.startswith("policy:") and acted is not None:
                self._tell(self.clock.sim_s(record.at.ToDatetime(tzinfo=UTC)), rule, acted)

    def _new_records(self) -> list[pb.AuditRecord]:
        """The job's records not seen yet, oldest first."""
        fresh: list[pb.AuditRecord] = []
        request = pb.ListAuditRecordsRequest(job_id=self.job.job_id, page_size=PAGE_SIZE)
        while True:
            page = self.pacer.ListAuditRecords(request)
            new = [r for r in page.records if r.audit_id not in self.seen]
            fresh += new
            if len(new) < len(page.records) or not page.next_page_token:
                break
            request.page_token = page.next_page_token
        self.seen.update(r.audit_id for r in fresh)
        return list(reversed(fresh))

    def _tell(self, sim_s: float, rule: str, acted: Acted) -> None:
        match acted.kind:
            case "interval_hint" if not self.tightened:
                self.tightened = True
                self._decide(sim_s, f"{MONITOR}: tighten to 20 s (rule {rule})")
            case "clear_hints" if acted.target == MONITOR and self.tightened:
                self.tightened = False
                self._decide(sim_s, f"{MONITOR}: back to baseline (rule {rule})")
            case "resume" if acted.target not in self.active:
                self.active.add(acted.target)
                self._decide(sim_s, f"{acted.target}: activate (rule {rule})")
            case "pause" if acted.target in self.active:
                self.active.discard(acted.target)
                self._decide(sim_s, f"{acted.target}: pause (rule {rule})")
            case "one_shot":
                self._one_shot(sim_s, rule, acted)
            case "clear_hints" if acted.target in self.queued:
                del self.queued[acted.target]
                self._decide(sim_s, f"{acted.target}: drop the queued one-shot (rule {rule})")

    def _one_shot(self, sim_s: float, rule: str, acted: Acted) -> None:
        # The checks compare a run with when it was asked to happen: for a delayed one-shot, the end of its delay.
        due_s = sim_s + self.clock.compression * acted.delay_ms / 1000
        self.one_shots.append(OneShotRequest(self.job.endpoint_id(acted.target), due_s, due_s))
        if acted.target in self.queued:
            return  # asked again while one waits: still the same run
        self.queued[acted.target] = sim_s
        when = f"in {acted.delay_ms * self.clock.compression / 60_000:.0f} min" if acted.delay_ms else "now"
        self._decide(sim_s, f"{acted.target}: one-shot asked for {when} (rule {rule})")

    def _forget_fired(self) -> None:
        """A queued one-shot that reached the shop since it was asked for is no longer queued."""
        last: dict[str, float] = {}
        for hit in self.hits():
            last[hit.endpoint] = max(last.get(hit.endpoint, hit.sim_s), hit.sim_s)
        for endpoint, asked_s in list(self.queued.items()):
            if last.get(endpoint, -1.0) >= asked_s:
                del self.queued[endpoint]

    def _decide(self, sim_s: float, what: str) -> None:
        self.decisions.append((sim_s, what))
        self.timeline.add(sim_s, "policy", what)
