"""The scheduler's view of the control plane: fresh heartbeats or claims decide; without them, a health probe stands
in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pacer_scheduler.readiness import ControlReachability, LatestEvidence

FRESH_S = 2.0


@dataclass
class Claims:
    reachable: bool | None = None
    called_at: float | None = None


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.answer


@pytest.mark.asyncio
@pytest.mark.parametrize("verdict", [True, False])
async def test_a_recent_claim_decides_without_probing(verdict: bool) -> None:
    clock, probe = Clock(), Probe(not verdict)
    reachability = ControlReachability(Claims(verdict, clock.now - 1), probe, FRESH_S, clock)
    assert await reachability.reachable() is verdict
    assert probe.calls == 0


@pytest.mark.asyncio
async def test_without_recent_claims_the_probe_decides_at_most_once_per_period() -> None:
    clock, probe = Clock(), Probe(True)
    claims = Claims()  # never claimed: no executor has credit yet
    reachability = ControlReachability(claims, probe, FRESH_S, clock)
    assert await reachability.reachable() is True
    clock.now += 1
    probe.answer = False
    assert await reachability.reachable() is True  # the last probe is still fresh
    clock.now += 1
    assert await reachability.reachable() is False
    assert probe.calls == 2

    claims.reachable, claims.called_at = True, clock.now  # claims resumed
    assert await reachability.reachable() is True
    assert probe.calls == 2


@pytest.mark.asyncio
async def test_the_latest_of_heartbeats_and_claims_decides() -> None:
    clock, probe = Clock(), Probe(True)
    claims, heartbeats = Claims(True, clock.now - 1.5), Claims()  # claims are idle: no executor yet
    reachability = ControlReachability(LatestEvidence(claims, heartbeats), probe, FRESH_S, clock)
    assert await reachability.reachable() is True

    heartbeats.reachable, heartbeats.called_at = False, clock.now - 0.2  # the control plane stopped answering
    assert await reachability.reachable() is False
    assert probe.calls == 0

    claims.reachable, claims.called_at = True, clock.now  # a claim answered since
    assert await reachability.reachable() is True
