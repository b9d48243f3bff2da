"""The benchmarks' target-side figures: what nginx logged, turned into lateness, due slots, doubles and the
sustained rate. A wrong parser would make every published figure wrong, so it is tested like product code."""

from __future__ import annotations

import math

import pytest

from bench.arrivals import Arrival, Window, due_slots, measure, parse_line, parse_stamp_ms
from bench.ladder import Climb, climb
from bench.results import Step, highest_sustained, next_rate

T0 = parse_stamp_ms("2026-01-05T10:00:00.000Z")


def arrival(run: str, endpoint: str, slot_s: float, late_ms: float) -> Arrival:
    return Arrival(run, endpoint, T0 + slot_s * 1000, T0 + slot_s * 1000 + late_ms)


def test_a_log_line_gives_arrival_time_and_headers() -> None:
    line = "1767607200.012\t0.002\trun_1\tep_1\t2026-01-05T10:00:00.000Z\n"
    parsed = parse_line(line)
    assert parsed is not None
    assert parsed.run_id == "run_1"
    assert parsed.endpoint_id == "ep_1"
    assert parsed.scheduled_ms == T0
    assert parsed.lateness_ms == pytest.approx(10.0)


@pytest.mark.parametrize("line", ["1767607200.012\t0.000\t-\t-\t-", "garbage", "a\tb\tc\td\te", ""])
def test_requests_without_a_slot_or_unreadable_lines_are_not_runs(line: str) -> None:
    assert parse_line(line) is None


def test_due_slots_follow_each_endpoints_grid() -> None:
    # Endpoint a first runs at 0.0 s, b at 0.5 s, every second; the window [1 s, 4 s) holds 3 slots of each.
    arrivals = [arrival("r1", "a", 0.0, 1), arrival("r2", "b", 0.5, 1)]
    window = Window(T0 + 1000, T0 + 4000)
    assert due_slots(arrivals, window, endpoints=2, interval_ms=1000) == 6
    # A third endpoint never seen counts window / interval.
    assert due_slots(arrivals, window, endpoints=3, interval_ms=1000) == 9


def test_measure_counts_executed_slots_lateness_and_doubles() -> None:
    window = Window(T0 + 1000, T0 + 3000)
    arrivals = [
        arrival("r0", "a", 0.0, 2),
        arrival("r1", "a", 1.0, 5),
        arrival("r1", "a", 1.0, 9),  # the same run id arrives twice
        arrival("r2", "a", 2.0, 50),
        arrival("r3", "b", 0.0, 1),
        arrival("r4", "b", 1.0, 3),
        arrival("r5", "b", 1.0, 4),  # the same slot under a second run id
        # b's slot at 2.0 s never arrives
    ]
    figures = measure(arrivals, window, endpoints=2, interval_ms=1000)
    assert figures.due == 4
    assert figures.executed == 4  # r1, r2, r4, r5
    assert figures.executed_share == 1.0
    assert figures.doubled_runs == 1
    assert figures.doubled_slots == 1
    assert figures.lateness_p50_ms == pytest.approx(5)
    assert figures.lateness_max_ms == pytest.approx(50)
    assert figures.arrived_per_s == pytest.approx(2.5)  # 5 arrivals in the 2 s window


def test_an_empty_window_is_unmeasured_not_zero() -> None:
    figures = measure([], Window(T0, T0 + 1000), endpoints=0, interval_ms=1000)
    assert math.isnan(figures.lateness_p99_ms)
    assert math.isnan(figures.executed_share)


def step(rate: float, share: float, p99_ms: float) -> Step:
    window = Window(T0, T0 + 1000)
    arrivals = [arrival(f"r{n}", f"e{n}", 0.1, p99_ms) for n in range(round(share * 1000))]
    return Step(rate, 1.0, measure(arrivals, window, endpoints=1000, interval_ms=1000), {}, {})


def test_the_sustained_rate_is_the_last_step_before_the_first_failure() -> None:
    steps = [step(500, 1.0, 5), step(750, 1.0, 20), step(1000, 0.99, 20), step(1250, 1.0, 5)]
    best = highest_sustained(steps)
    assert best is not None
    assert best.offered_per_s == 750
    assert highest_sustained([step(500, 1.0, 150)]) is None


def test_the_ladder_stops_after_a_failure_unless_a_comparison_rate_is_still_ahead() -> None:
    rates = [500.0, 750.0, 1000.0, 1250.0]
    assert next_rate(rates, [step(500, 1.0, 5)], through_per_s=0) == 750
    assert next_rate(rates, [step(500, 0.5, 5)], through_per_s=0) is None
    assert next_rate(rates, [step(500, 0.5, 5)], through_per_s=1000) == 750
    assert next_rate(rates, [step(500, 0.5, 5), step(750, 0.5, 5), step(1000, 0.5, 5)], through_per_s=1000) is None


def test_a_failed_window_is_measured_once_more_and_the_climb_stops_after_a_confirmed_failure() -> None:
    windows = iter([step(500, 1.0, 5), step(750, 1.0, 500), step(750, 1.0, 20), step(1000, 0.5, 5), step(1000, 0.5, 5)])
    grown: list[float] = []
    steps = climb(Climb([500.0, 750.0, 1000.0, 1250.0]), grown.append, lambda rate: next(windows), lambda s: None)
    assert grown == [500.0, 750.0, 1000.0]
    assert [s.offered_per_s for s in steps] == [500.0, 750.0, 1000.0]
    assert steps[1].sustained  # the second window at 750 is the one kept
    assert not steps[2].sustained


def test_past_the_first_failure_the_climb_reaches_the_comparison_rate_without_second_chances() -> None:
    measured: list[float] = []

    def failing(rate: float) -> Step:
        measured.append(rate)
        return step(rate, 0.5, 5)

    climb(Climb([500.0, 750.0, 1000.0, 1250.0], through_per_s=1000), lambda rate: None, failing, lambda s: None)
    assert measured == [500.0, 500.0, 750.0, 1000.0]
