"""The policy model, pure: the stored form of every kind of action, what a rule decides on a run (streak, cooldown,
errors), how its effects read, and the limits of the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacer_common import limits
from pacer_common.policies import (
    Action,
    ClearHints,
    IntervalHint,
    OneShot,
    Outcome,
    Pause,
    ResetFailures,
    Resume,
    Rule,
    RuleState,
    decide,
    describe,
    duration_text,
    failed,
    from_json,
    to_json,
    waiting,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EVERY_KIND = (
    Action(IntervalHint(30_000, 3_600_000), "inventory"),
    Action(OneShot(2_000)),
    Action(Pause(600_000), "inventory"),
    Action(Resume()),
    Action(ClearHints()),
    Action(ResetFailures(), "alerts"),
)


def test_every_kind_of_action_survives_the_stored_form():
    rules = (Rule("surge", "body.ratio > 5.0", EVERY_KIND[:5], 60_000), Rule("tidy", "true", EVERY_KIND[5:]))

    assert from_json(to_json(rules)) == rules


def test_no_rules_are_stored_as_null():
    assert to_json(()) is None
    assert from_json(None) == ()


@pytest.mark.parametrize(
    ("action", "reads"),
    [
        (EVERY_KIND[0], "interval hint 30s for 1h on inventory"),
        (Action(IntervalHint(90_000)), "interval hint 1m30s for 1h on self"),
        (EVERY_KIND[1], "one-shot run in 2s on self"),
        (Action(OneShot()), "one-shot run now on self"),
        (EVERY_KIND[2], "pause for 10m on inventory"),
        (Action(Pause()), "pause until resumed on self"),
        (EVERY_KIND[3], "resume on self"),
        (EVERY_KIND[4], "clear hints on self"),
        (EVERY_KIND[5], "reset failures on alerts"),
    ],
)
def test_each_effect_reads_as_a_person_would_write_it(action, reads):
    assert describe(action.step, action.endpoint or "self") == reads


def test_durations_read_in_their_two_largest_units():
    assert [duration_text(ms) for ms in (250, 1_000, 60_000, 5_400_000, 90_061_000, 0)] == [
        "250ms",
        "1s",
        "1m",
        "1h30m",
        "1d1h",
        "0s",
    ]


RULE = Rule("surge", "true", (Action(ClearHints()),), cooldown_ms=60_000)


def test_a_condition_that_holds_fires_and_counts_the_streak():
    decision = decide(RULE, True, RuleState(2, None), NOW)

    assert decision.outcome is Outcome.FIRED
    assert decision.acts
    assert decision.state == RuleState(3, NOW)


def test_a_condition_that_does_not_hold_resets_the_streak_and_records_nothing():
    decision = decide(RULE, False, RuleState(4, NOW), NOW + timedelta(hours=1))

    assert decision.outcome is None
    assert decision.state == RuleState(0, NOW)


def test_within_the_cooldown_the_rule_is_skipped_but_its_streak_grows():
    fired_at = NOW - timedelta(seconds=59)

    decision = decide(RULE, True, RuleState(1, fired_at), NOW)

    assert decision.outcome is Outcome.SKIPPED_COOLDOWN
    assert not decision.acts
    assert decision.state == RuleState(2, fired_at)


def test_the_cooldown_ends_exactly_cooldown_ms_after_the_last_firing():
    decision = decide(RULE, True, RuleState(1, NOW - timedelta(seconds=60)), NOW)

    assert decision.outcome is Outcome.FIRED


def test_without_a_cooldown_a_rule_fires_on_every_run_it_holds():
    no_cooldown = Rule("each", "true", RULE.then)

    assert decide(no_cooldown, True, RuleState(1, NOW), NOW).outcome is Outcome.FIRED


def test_a_condition_held_back_only_by_its_streak_grows_the_streak_without_firing():
    decision = waiting(RuleState(1, NOW))

    assert decision.outcome is None
    assert decision.state == RuleState(2, NOW)


def test_an_error_is_recorded_and_breaks_the_streak():
    decision = failed(RuleState(5, NOW))

    assert decision.outcome is Outcome.ERROR
    assert decision.state == RuleState(0, NOW)


def test_the_limits_table_holds_the_policy_numbers():
    table = limits.POLICY_LIMITS
    api = "pacer.control.v1."
    assert table[(api + "AddEndpointToJobRequest", "policies")].max_length == 10
    assert table[(api + "Policies", "rules")].max_length == 10
    assert table[(api + "Policy", "when")].max_length == 1000
    assert table[(api + "Policy", "then")].max_length == 5
    assert table[(api + "Policy", "name")].max_length == 64
    assert table[(api + "Policy", "cooldown_ms")].maximum == 604_800_000
    assert table[(api + "PolicyIntervalHint", "ttl_ms")].minimum == 60_000
    assert table[(api + "PolicyOneShot", "delay_ms")].maximum == 86_400_000
    assert table[(api + "PolicyPause", "for_ms")].maximum == 2_592_000_000
