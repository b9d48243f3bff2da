"""Endpoint policies: the rules an endpoint carries, what one does when a run is recorded, and how it reads.

A rule is a condition (CEL over the run just recorded) and one to five steering actions, on its own endpoint or a
sibling in the same job. This module is the pure part: the rule as a value, its canonical JSON (the form stored in
`endpoints.policies`), the decision a rule makes on one run (`decide`: streak and cooldown) and the text an effect
reads as. Compiling and evaluating the condition is `pacer_control.conditions`; applying the actions is
`pacer_control.policies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

# The names a condition may read (see `activation`).
VARIABLES: Final = frozenset({"run", "body", "endpoint", "streak"})
DEFAULT_HINT_TTL_MS: Final = 3_600_000


class Outcome(StrEnum):
    """What a rule whose condition held did on a run (the `policy_firings.outcome` column)."""

    FIRED = "FIRED"
    SKIPPED_COOLDOWN = "SKIPPED_COOLDOWN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class IntervalHint:
    interval_ms: int
    ttl_ms: int = 0


@dataclass(frozen=True)
class OneShot:
    delay_ms: int = 0


@dataclass(frozen=True)
class Pause:
    # Zero pauses until resumed.
    for_ms: int = 0


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class ClearHints:
    pass


@dataclass(frozen=True)
class ResetFailures:
    pass


Step = IntervalHint | OneShot | Pause | Resume | ClearHints | ResetFailures
# The JSON name of each kind of step, which is also the proto oneof member.
_KINDS: Final[Mapping[str, type[Step]]] = {
    "interval_hint": IntervalHint,
    "one_shot": OneShot,
    "pause": Pause,
    "resume": Resume,
    "clear_hints": ClearHints,
    "reset_failures": ResetFailures,
}
_KIND_OF: Final = {kind: name for name, kind in _KINDS.items()}


@dataclass(frozen=True)
class Action:
    """One step of a rule, on `endpoint` (a sibling's name) or, when empty, the rule's own endpoint."""

    step: Step
    endpoint: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    then: tuple[Action, ...]
    cooldown_ms: int = 0


@dataclass(frozen=True)
class RuleState:
    """A rule's memory on one endpoint: consecutive runs its condition held, and when it last fired."""

    streak: int = 0
    last_fired_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What a rule does on one run: None outcome when its condition did not hold (nothing is recorded)."""

    outcome: Outcome | None
    state: RuleState

    @property
    def acts(self) -> bool:
        return self.outcome is Outcome.FIRED


# -- canonical JSON ------------------------------------------------------------------------------------------------


def step_kind(step: Step) -> str:
    return _KIND_OF[type(step)]


def to_json(rules: Sequence[Rule]) -> list[dict[str, Any]] | None:
    """The stored form: a list of plain dicts, every field written, or None for no rules."""
    if not rules:
        return None
    return [
        {
            "name": rule.name,
            "when": rule.when,
            "then": [{"endpoint": a.endpoint, step_kind(a.step): vars(a.step).copy()} for a in rule.then],
            "cooldown_ms": rule.cooldown_ms,
        }
        for rule in rules
    ]


def from_json(stored: Sequence[Mapping[str, Any]] | None) -> tuple[Rule, ...]:
    """The rules of the stored form (`to_json`)."""
    return tuple(
        Rule(
            name=rule["name"],
            when=rule["when"],
            then=tuple(_action(action) for action in rule["then"]),
            cooldown_ms=rule.get("cooldown_ms", 0),
        )
        for rule in stored or ()
    )


def _action(stored: Mapping[str, Any]) -> Action:
    (kind,) = (name for name in stored if name in _KINDS)
    return Action(_KINDS[kind](**stored[kind]), stored.get("endpoint", ""))


# -- deciding ------------------------------------------------------------------------------------------------------


def decide(rule: Rule, held: bool, before: RuleState, now: datetime) -> Decision:
    """The rule's decision on a run whose condition `held` (or not), given its state `before`.

    A condition that does not hold resets the streak and records nothing. One that holds within `cooldown_ms` of the
    last firing is skipped (the streak still grows); otherwise the rule fires and its firing time is now.
    """
    if not held:
        return Decision(None, RuleState(0, before.last_fired_at))
    streak = before.streak + 1
    last = before.last_fired_at
    if rule.cooldown_ms and last is not None and now - last < timedelta(milliseconds=rule.cooldown_ms):
        return Decision(Outcome.SKIPPED_COOLDOWN, RuleState(streak, last))
    return Decision(Outcome.FIRED, RuleState(streak, now))


def waiting(before: RuleState) -> Decision:
    """A condition held apart from its streak requirement (`streak >= 3` on the second run): the streak grows,
    nothing fires and nothing is recorded."""
    return Decision(None, RuleState(before.streak + 1, before.last_fired_at))


def failed(before: RuleState) -> Decision:
    """A condition that could not be evaluated: recorded as an error, and it breaks the streak."""
    return Decision(Outcome.ERROR, RuleState(0, before.last_fired_at))


# -- reading -------------------------------------------------------------------------------------------------------


def duration_text(ms: int) -> str:
    """A duration as people write it: 500ms, 30s, 5m, 1h, 2d, or the two largest units (1h30m)."""
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    units = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    parts = []
    for unit, size in units:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2]) if parts else "0s"


def describe(step: Step, target: str) -> str:
    """What a step did, as its effect is listed: "interval hint 30s for 1h on inventory-checker"."""
    match step:
        case IntervalHint(interval_ms, ttl_ms):
            ttl = duration_text(ttl_ms or DEFAULT_HINT_TTL_MS)
            text = f"interval hint {duration_text(interval_ms)} for {ttl}"
        case OneShot(delay_ms):
            text = f"one-shot run in {duration_text(delay_ms)}" if delay_ms else "one-shot run now"
        case Pause(for_ms):
            text = f"pause for {duration_text(for_ms)}" if for_ms else "pause until resumed"
        case Resume():
            text = "resume"
        case ClearHints():
            text = "clear hints"
        case ResetFailures():
            text = "reset failures"
    return f"{text} on {target}"


def activation(run: Mapping[str, Any], body: Any, endpoint: Mapping[str, Any], streak: int) -> dict[str, Any]:
    """The variables a condition reads: the run, its body (parsed JSON or None), the endpoint and the streak."""
    return {"run": dict(run), "body": body, "endpoint": dict(endpoint), "streak": streak}
