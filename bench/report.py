"""The benchmarks' printed figures: one block per measured window, and the sustained rate of a ladder."""

from __future__ import annotations

from bench.results import MAX_P99_MS, MIN_EXECUTED_SHARE, RunResult, Step


def step_lines(step: Step) -> list[str]:
    """The figures of one window, target-side first (what a user would see), then Pacer's own records."""
    t = step.target
    lines = [
        f"  at the target       runs/s {t.arrived_per_s:.1f} (offered {step.offered_per_s:.0f}); executed per due slot "
        f"{t.executed_share:.2%} ({t.executed} of {t.due:.0f})",
        f"                      lateness ms p50 {t.lateness_p50_ms:.1f}  p95 {t.lateness_p95_ms:.1f}"
        f"  p99 {t.lateness_p99_ms:.1f}  max {t.lateness_max_ms:.1f}",
        f"                      doubled (whole run so far): run ids seen twice {t.doubled_runs}, slots run under "
        f"two run ids {t.doubled_slots}",
    ]
    if step.records:
        r = step.records
        lines += [
            f"  at the executor     runs/s {r.runs_per_s:.1f}; succeeded {r.succeeded_share:.1%}; lateness ms p50 "
            f"{r.lateness_p50_ms:.1f}  p95 {r.lateness_p95_ms:.1f}  p99 {r.lateness_p99_ms:.1f}  max "
            f"{r.lateness_max_ms:.1f}",
            f"  lost                {r.lost_status + r.never_arrived} (LOST {r.lost_status}, begun but never at the "
            f"target {r.never_arrived})",
        ]
    cpu = ", ".join(f"{name} {ms:.3f}" for name, ms in step.cpu_ms_per_run.items())
    rss = ", ".join(f"{name} {mib:.0f}" for name, mib in step.peak_rss_mib.items())
    lines += [
        f"  CPU ms per run      {sum(step.cpu_ms_per_run.values()):.3f} ({cpu})",
        f"  peak RSS MiB        {rss}",
        f"  sustained           {'yes' if step.sustained else 'no'} (>= {MIN_EXECUTED_SHARE:.1%} of due slots "
        f"executed and target p99 < {MAX_P99_MS:.0f} ms)",
    ]
    return lines


def sustained_line(result: RunResult) -> str:
    rate = result.sustained_per_s()
    if rate is None:
        lowest = min((s.offered_per_s for s in result.steps), default=0)
        return f"highest sustained rate: none of the rates measured (below {lowest:.0f} runs/s)"
    step = result.at_rate(rate)
    assert step is not None
    return (
        f"highest sustained rate: {rate:.0f} runs/s (executed {step.target.executed_share:.2%}, target p99 "
        f"{step.target.lateness_p99_ms:.1f} ms)"
    )
