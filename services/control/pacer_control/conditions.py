"""Checking an endpoint's rules when they are set: names, limits, actions, and each condition compiled.

A condition is compiled by the CEL package (never parsed here): a syntax error is refused with the compiler's message,
a name other than the variables a condition may read is refused, and the condition is evaluated once, in the sandbox,
on a representative run. That evaluation proves what it can: a value that is not a bool, or an evaluation that
overruns the deadline, is refused. Any other evaluation error is not (on another run the condition may read fields
this sample lacks); at run time a non-bool value is recorded as the rule's error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import cel

from pacer_common import limits
from pacer_common import policies as rules_
from pacer_common.limits import POLICY_LIMITS, FieldKey, Limit
from pacer_common.policies import Action, IntervalHint, OneShot, Pause, Rule
from pacer_control.sandbox import Sandbox
from pacer_control.validation import Checks

_API = "pacer.control.v1."
# A comprehension's own variable (`list.all(x, ...)`) is bound by the expression, not read from the activation.
_BOUND: Final = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_NAME: Final = re.compile(limits.POLICY_NAME_PATTERN)
SAMPLE: Final = rules_.activation(
    run={
        "id": "run_sample",
        "status": "SUCCESS",
        "http_status": 200,
        "duration_ms": 120,
        "error_message": "",
        "source": "baseline-interval",
        "attempt": 1,
        "attempts": 1,
        "response_truncated": False,
    },
    body=None,
    endpoint={
        "id": "ep_sample",
        "name": "sample",
        "failure_count": 0,
        "interval_ms": 60_000,
        "paused": False,
        "hinted": False,
    },
    streak=1,
)


def _limit(message: str, field: str) -> Limit:
    return POLICY_LIMITS[(_API + message, field)]


def _bounds(limit: Limit) -> tuple[int, int]:
    assert limit.minimum is not None
    assert limit.maximum is not None
    return limit.minimum, limit.maximum


def _in(checks: Checks, value: int, field: str, key: FieldKey) -> None:
    """`value` within the limit at `key`, or zero where zero stands for something."""
    limit = POLICY_LIMITS[key]
    low, high = _bounds(limit)
    if value == 0 and limit.zero != "refused":
        return
    if not low <= value <= high:
        checks.fail(field, f"must be between {low} and {high}" + ("" if limit.zero == "refused" else " (or 0)"))


class RuleChecker:
    """Checks rules as sent, with the service's interval floor and a sandbox for the sample evaluation."""

    def __init__(self, floor_ms: int, sandbox: Sandbox) -> None:
        self._floor_ms = floor_ms
        self._sandbox = sandbox

    def check(self, checks: Checks, rules: Sequence[Rule], field: str) -> None:
        """Add a violation to `checks` for everything wrong with `rules`, each naming `field[i]...`."""
        most = limits.POLICIES.max_length
        assert most is not None
        if len(rules) > most:
            checks.fail(field, f"must have at most {most} rules")
            return
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            at = f"{field}[{index}]"
            self._name(checks, rule.name, f"{at}.name", seen)
            self._when(checks, rule.when, f"{at}.when")
            self._then(checks, rule.then, f"{at}.then")
            _in(checks, rule.cooldown_ms, f"{at}.cooldown_ms", (_API + "Policy", "cooldown_ms"))

    def _name(self, checks: Checks, name: str, field: str, seen: set[str]) -> None:
        longest = _limit("Policy", "name").max_length
        if not name or len(name) > (longest or 0) or not _NAME.match(name):
            checks.fail(field, f"must be 1 to {longest} of a-z, 0-9, '-' and '_'")
        elif name in seen:
            checks.fail(field, f"repeats the name {name!r}; rule names are unique on an endpoint")
        seen.add(name)

    def _when(self, checks: Checks, when: str, field: str) -> None:
        longest = _limit("Policy", "when").max_length or 0
        if not checks.printable(when, field):
            return
        if not when.strip():
            checks.fail(field, "must not be empty")
            return
        if len(when) > longest:
            checks.fail(field, f"must be at most {longest} characters")
            return
        problem = compile_problem(when) or self._sample_problem(when)
        if problem:
            checks.fail(field, problem)

    def _sample_problem(self, when: str) -> str:
        verdict = self._sandbox.evaluate(when, SAMPLE)
        if verdict.timed_out:
            return f"took longer than {self._sandbox.deadline_ms} ms on a sample run"
        if verdict.not_bool:
            return verdict.error
        return ""

    def _then(self, checks: Checks, then: Sequence[Action], field: str) -> None:
        most = _limit("Policy", "then").max_length
        if not then or len(then) > (most or 0):
            checks.fail(field, f"must have 1 to {most} actions")
            return
        for index, action in enumerate(then):
            at = f"{field}[{index}]"
            if action.endpoint:
                checks.text(action.endpoint, f"{at}.endpoint", limits.NAME.max_length or 0)
            _STEP_CHECKS.get(type(action.step), _no_check)(self, checks, action.step, at)

    def _interval_hint(self, checks: Checks, step: Any, at: str) -> None:
        checks.interval(step.interval_ms, f"{at}.interval_hint.interval_ms", self._floor_ms)
        _in(checks, step.ttl_ms, f"{at}.interval_hint.ttl_ms", (_API + "PolicyIntervalHint", "ttl_ms"))

    def _one_shot(self, checks: Checks, step: Any, at: str) -> None:
        _in(checks, step.delay_ms, f"{at}.one_shot.delay_ms", (_API + "PolicyOneShot", "delay_ms"))

    def _pause(self, checks: Checks, step: Any, at: str) -> None:
        _in(checks, step.for_ms, f"{at}.pause.for_ms", (_API + "PolicyPause", "for_ms"))


def _no_check(checker: RuleChecker, checks: Checks, step: Any, at: str) -> None:
    """Resume, clear hints and reset failures take no argument."""


_STEP_CHECKS: Final[Mapping[type, Callable[[RuleChecker, Checks, Any, str], None]]] = {
    IntervalHint: RuleChecker._interval_hint,
    OneShot: RuleChecker._one_shot,
    Pause: RuleChecker._pause,
}


def compile_problem(when: str) -> str:
    """Why `when` is not a condition (the compiler's message, or a name it may not read), or "" when it compiles."""
    try:
        program = cel.compile(when)
    except Exception as error:  # noqa: BLE001 - whatever the compiler refuses is the condition's fault, and is reported
        return str(error) or type(error).__name__
    unknown = set(program.variables()) - rules_.VARIABLES - set(_BOUND.findall(when))
    if unknown:
        allowed = ", ".join(sorted(rules_.VARIABLES))
        return f"reads {', '.join(sorted(unknown))}; a condition may read only {allowed}"
    return ""


def interval_hints(rules: Sequence[Rule], field: str) -> dict[str, int]:
    """The interval of every interval-hint action by its field, for the tenant's own floor (quotas)."""
    return {
        f"{field}[{i}].then[{j}].interval_hint.interval_ms": action.step.interval_ms
        for i, rule in enumerate(rules)
        for j, action in enumerate(rule.then)
        if isinstance(action.step, IntervalHint)
    }
