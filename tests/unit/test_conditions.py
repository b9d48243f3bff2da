"""Conditions: compiled by the CEL package, evaluated in a child process that a runaway expression cannot hold up."""

from __future__ import annotations

import time

import pytest

from pacer_control.conditions import SAMPLE, compile_problem
from pacer_control.sandbox import Sandbox

# A few thousand elements, compared pairwise three levels deep: many seconds of CEL evaluation.
RUNAWAY = "body.xs.all(a, body.xs.all(b, body.xs.all(c, a + b + c >= 0)))"


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(deadline_ms=300)
    yield box
    box.close()


def test_a_condition_reads_the_run_the_body_and_the_streak(sandbox):
    variables = {**SAMPLE, "body": {"ratio": 6.5}, "streak": 3}

    verdict = sandbox.evaluate("run.status == 'SUCCESS' && body.ratio > 5.0 && streak >= 3", variables)

    assert verdict.held is True
    assert verdict.error == ""


def test_a_runtime_error_is_the_verdict_not_an_exception(sandbox):
    verdict = sandbox.evaluate("body.ratio > 5.0", SAMPLE)  # body is null on the sample

    assert verdict.held is None
    assert verdict.error


def test_a_value_that_is_not_a_bool_is_an_error(sandbox):
    assert sandbox.evaluate("run.http_status", SAMPLE).error == "the condition must yield a bool, not int"


def test_a_runaway_condition_is_stopped_at_its_deadline_and_the_next_one_runs(sandbox):
    variables = {**SAMPLE, "body": {"xs": list(range(3000))}}
    started = time.monotonic()

    verdict = sandbox.evaluate(RUNAWAY, variables)

    assert verdict.timed_out
    assert verdict.error == "took longer than 300 ms"
    assert time.monotonic() - started < 3
    assert sandbox.evaluate("streak == 1", SAMPLE).held is True


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("run.status == 'SUCCESS'", ""),
        ("[1, 2].exists(x, x > streak)", ""),
        ("run.status ==", "Syntax error"),
        ("env.HOME == '/root'", "reads env; a condition may read only body, endpoint, run, streak"),
    ],
)
def test_compiling_reports_syntax_errors_and_unknown_names(when, problem):
    found = compile_problem(when)

    assert (problem in found) if problem else found == ""
