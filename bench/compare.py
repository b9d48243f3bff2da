"""Pacer against the peer, from their result files: the same offered rates side by side, the highest sustained rate
of each, and the ratios a reader asks for (Pacer's sustained rate / the peer's; the peer's p99 / Pacer's p99)."""

from __future__ import annotations

import math

from bench.results import RunResult, Step


def _cell(step: Step | None) -> str:
    if step is None:
        return "not measured"
    t = step.target
    return f"{t.arrived_per_s:7.1f}/s {t.executed_share:7.2%} p50 {t.lateness_p50_ms:7.1f} p99 {t.lateness_p99_ms:7.1f}"


def _name(result: RunResult) -> str:
    return f"{'Pacer' if result.system == 'pacer' else 'APScheduler 3'} ({result.store})"


def _rate_ratio(pacer: RunResult, peer: RunResult) -> str:
    ours, theirs = pacer.sustained_per_s(), peer.sustained_per_s()
    if ours is None:
        return "Pacer sustained none of its rates"
    if theirs is None:
        lowest = min(s.offered_per_s for s in peer.steps)
        return f"more than {ours / lowest:.1f}x (the peer sustained none, from {lowest:.0f}/s up)"
    return f"{ours / theirs:.1f}x ({ours:.0f} / {theirs:.0f} runs/s)"


def _p99_ratio(pacer: Step | None, peer: Step | None) -> str:
    if pacer is None or peer is None:
        return "not measured at the same rate"
    ours, theirs = pacer.target.lateness_p99_ms, peer.target.lateness_p99_ms
    if math.isnan(theirs):
        return "the peer executed no run due in the window"
    if math.isnan(ours) or ours <= 0:
        return "n/a"
    return f"{theirs / ours:.1f}x ({theirs:.1f} / {ours:.1f} ms)"


def comparison_lines(pacer: RunResult, peers: list[RunResult]) -> list[str]:
    """The final table: one row per offered rate, one column per system; then the ratios per peer."""
    systems = [pacer, *peers]
    rates = sorted({step.offered_per_s for result in systems for step in result.steps})
    header = "offered/s | " + " | ".join(f"{_name(r):^44}" for r in systems)
    lines = [
        "",
        "Comparison, measured at the target: delivered runs/s, executed per due slot, lateness p50/p99 (ms)",
        header,
        "-" * len(header),
    ]
    lines += [f"{rate:9.0f} | " + " | ".join(f"{_cell(r.at_rate(rate)):44}" for r in systems) for rate in rates]
    reference = max((s.offered_per_s for s in pacer.steps if s.offered_per_s <= 1000), default=None)
    for peer in peers:
        lines.append(f"{_name(peer)}:")
        lines.append(f"  Pacer's sustained rate / the peer's: {_rate_ratio(pacer, peer)}")
        if reference is not None:
            ratio = _p99_ratio(pacer.at_rate(reference), peer.at_rate(reference))
            lines.append(f"  the peer's p99 / Pacer's p99 at {reference:.0f} runs/s: {ratio}")
    return lines
