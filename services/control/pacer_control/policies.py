"""Endpoint policies at run time: when a run is recorded, its endpoint's rules are evaluated and the ones whose
condition holds act, through the same steering actions an agent calls.

Off the result path by design: the pipeline hands over the ids of the runs a batch settled once the batch has
committed (`Pipeline.on_recorded`), into a bounded queue, and returns; one worker thread drains the queue. So a rule's
error never fails a result batch and a slow rule never slows one; when the queue is full the runs are dropped,
logged and counted (`pacer_policy_runs_dropped_total`). Each condition is evaluated in the sandbox
(`pacer_control.sandbox`) under a deadline. The actions run as `policy:<rule>` through `pacer_control.actions`, with
its validation, clamps, the tenant's floor and the audit trail; the reason quotes the condition.

`streak` counts the consecutive runs on which the condition held. A condition that asks for a streak
(`... && streak >= 3`) would never hold on the first run to start one, so a condition that reads `streak` and does
not hold is evaluated again with the streak unbounded: when that holds, the run extends the streak without firing.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pacer_common import policies
from pacer_common.errors import PacerError
from pacer_common.policies import (
    Action,
    ClearHints,
    Decision,
    IntervalHint,
    OneShot,
    Outcome,
    Pause,
    ResetFailures,
    Resume,
    Rule,
    RuleState,
)
from pacer_control.actions import ControlActions
from pacer_control.auth import Principal
from pacer_control.firings import Firing, PolicyBook, Subject
from pacer_control.metrics import ControlMetrics
from pacer_control.sandbox import Sandbox, Verdict
from pacer_control.validation import MAX_REASON

log = logging.getLogger("pacer.control.policies")

QUEUE_RUNS: Final = 10_000
UNBOUNDED_STREAK: Final = 2**31 - 1
_READS_STREAK: Final = re.compile(r"\bstreak\b")
_METRIC_OUTCOME: Final = {
    Outcome.FIRED: "fired",
    Outcome.SKIPPED_COOLDOWN: "skipped_cooldown",
    Outcome.ERROR: "error",
}


@dataclass(frozen=True)
class RuleActor(Principal):
    """The tenant's rule acting on its endpoints: the audit trail names it `policy:<rule>`."""

    rule: str = ""

    @property
    def actor(self) -> str:
        return f"policy:{self.rule}"


def body_of(run: Mapping[str, Any]) -> Any:
    """The captured response parsed as JSON when it is JSON (and complete), else None."""
    text = run["response_body"]
    if not text or run["response_truncated"]:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def endpoint_view(subject: Subject, now: datetime) -> dict[str, Any]:
    """The endpoint as a condition reads it; `interval_ms` is the effective one (a fresh hint's, else the
    baseline's, 0 for a cron baseline)."""
    endpoint = subject.endpoint
    hinted = endpoint["hint_interval_ms"] is not None and (
        endpoint["hint_expires_at"] is not None and endpoint["hint_expires_at"] > now
    )
    return {
        "id": subject.endpoint_id,
        "name": endpoint["name"],
        "failure_count": endpoint["failure_count"],
        "interval_ms": (endpoint["hint_interval_ms"] if hinted else endpoint["interval_ms"]) or 0,
        "paused": bool(endpoint["paused"]),
        "hinted": hinted,
    }


def run_view(subject: Subject) -> dict[str, Any]:
    run = subject.run
    return {
        "id": run["id"],
        "status": str(run["status"]),
        "http_status": run["http_status"],
        "duration_ms": run["duration_ms"],
        "error_message": run["error_message"],
        "source": run["source"],
        "attempt": run["attempt"],
        "attempts": len(run["attempts"] or ()) or 1,
        "response_truncated": bool(run["response_truncated"]),
    }


class PolicyEngine:
    """Evaluates the rules of recorded runs on a worker thread of its own, fed by `submit`."""

    def __init__(
        self,
        book: PolicyBook,
        actions: ControlActions,
        sandbox: Sandbox,
        metrics: ControlMetrics,
        capacity: int = QUEUE_RUNS,
    ) -> None:
        self._book = book
        self._actions = actions
        self._clock = actions.clock
        self._sandbox = sandbox
        self._metrics = metrics
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=capacity)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0

    # -- the result path's side ------------------------------------------------------------------------------------

    def submit(self, run_ids: Sequence[str]) -> None:
        """Queue the runs for evaluation and return at once; runs that do not fit are dropped and counted."""
        self._ensure_worker()
        for run_id in run_ids:
            with self._idle:
                self._pending += 1
            try:
                self._queue.put_nowait(run_id)
            except queue.Full:
                self._done()
                self._metrics.policy_dropped.inc()
                log.warning("policy queue full: run not evaluated", extra={"event": "policy.dropped", "run_id": run_id})

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every queued run has been evaluated (for tests and shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self) -> None:
        """Stop the worker after the runs already queued, and the sandbox."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(10)
        self._sandbox.close()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="policies", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None:
                return
            try:
                self.evaluate(run_id)
            except Exception:  # the worker outlives any one run: a database error is logged, the next run goes on
                log.exception("policy evaluation failed", extra={"event": "policy.failed", "run_id": run_id})
            finally:
                self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    # -- evaluation ------------------------------------------------------------------------------------------------

    def evaluate(self, run_id: str) -> list[Firing]:
        """Evaluate the rules of the run's endpoint, act on those that hold, and record what happened."""
        subject = self._book.subject(run_id)
        if subject is None or not subject.rules or not subject.live:
            return []
        now = self._clock.now()
        base = {"run": run_view(subject), "body": body_of(subject.run), "endpoint": endpoint_view(subject, now)}
        firings: list[Firing] = []
        states: dict[str, RuleState] = {}
        for rule in subject.rules:
            before = subject.states.get(rule.name, RuleState())
            decision, error = self._decide(rule, before, base, now)
            states[rule.name] = decision.state
            if decision.outcome is None:
                continue
            if decision.outcome is Outcome.ERROR:
                firing = Firing(rule.name, Outcome.ERROR, error_message=error)
            elif decision.acts:
                firing = self._act(subject, rule, now)
            else:
                firing = Firing(rule.name, decision.outcome)
            firings.append(firing)
            self._metrics.policy_evaluated(_METRIC_OUTCOME[firing.outcome])
        if firings or states != subject.states:  # a run that changes nothing writes nothing
            self._book.record(subject, firings, states, now)
        return firings

    def _decide(self, rule: Rule, before: RuleState, base: dict[str, Any], now: datetime) -> tuple[Decision, str]:
        """The rule's decision, and the condition's error when it could not be evaluated."""
        verdict = self._sandbox.evaluate(rule.when, {**base, "streak": before.streak + 1})
        if verdict.held is None:
            self._log_error(rule, verdict)
            return policies.failed(before), verdict.error
        if not verdict.held and _READS_STREAK.search(rule.when):
            unbounded = self._sandbox.evaluate(rule.when, {**base, "streak": UNBOUNDED_STREAK})
            if unbounded.held:
                return policies.waiting(before), ""
        return policies.decide(rule, verdict.held, before, now), ""

    def _log_error(self, rule: Rule, verdict: Verdict) -> None:
        log.info(
            "policy condition failed",
            extra={"event": "policy.error", "rule": rule.name, "error": verdict.error, "timeout": verdict.timed_out},
        )

    def _act(self, subject: Subject, rule: Rule, now: datetime) -> Firing:
        """Run the rule's actions in order; the first that fails stops the rest and makes the firing an error."""
        who = RuleActor(subject.tenant_id, key_prefix="", rule=rule.name)
        reason = f"policy {rule.name}: {rule.when}"
        reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."
        effects: list[str] = []
        for action in rule.then:
            target = action.endpoint or str(subject.endpoint["name"])
            try:
                self._step(who, subject, action, reason, now)
            except PacerError as error:
                message = f"{policies.describe(action.step, target)}: {error}"
                return Firing(rule.name, Outcome.ERROR, tuple(effects), message)
            effects.append(policies.describe(action.step, target))
        log.info(
            "policy fired",
            extra={"event": "policy.fired", "rule": rule.name, "run_id": subject.run["id"], "effects": effects},
        )
        return Firing(rule.name, Outcome.FIRED, tuple(effects))

    def _step(self, who: RuleActor, subject: Subject, action: Action, reason: str, now: datetime) -> None:
        endpoint_id = self._target(subject, action)
        actions = self._actions
        match action.step:
            case IntervalHint(interval_ms, ttl_ms):
                ttl_minutes = max(1, (ttl_ms or policies.DEFAULT_HINT_TTL_MS) // 60_000)
                actions.apply_interval_hint(who, endpoint_id, interval_ms, ttl_minutes, reason)
            case OneShot(delay_ms):
                run_at = now + timedelta(milliseconds=delay_ms)
                actions.schedule_one_shot(who, endpoint_id, run_at, None, reason)
            case Pause(for_ms):
                until = now + timedelta(milliseconds=for_ms) if for_ms else None
                actions.pause_or_resume(who, endpoint_id, until, False, reason)
            case Resume():
                actions.pause_or_resume(who, endpoint_id, None, True, reason)
            case ClearHints():
                actions.clear_hints(who, endpoint_id, reason)
            case ResetFailures():
                actions.reset_failures(who, endpoint_id, reason)

    def _target(self, subject: Subject, action: Action) -> str:
        if not action.endpoint or action.endpoint == subject.endpoint["name"]:
            return subject.endpoint_id
        found = self._book.sibling(subject.tenant_id, str(subject.run["job_id"]), action.endpoint)
        if found is None:
            raise _NoSibling(action.endpoint)
        return found


class _NoSibling(PacerError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no endpoint named {name!r} in the job (deleted, renamed or never added)")
