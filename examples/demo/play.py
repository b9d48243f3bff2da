"""The live part of the demo: every 10 simulated seconds the agent steps (or the watcher reads what the policies
did) while the timeline prints as it goes."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from examples.agents.flash_sale_agent import FlashSaleAgent
from examples.demo.clock import SimClock, mmss
from examples.demo.scenario import AGENT_STEP_S, DURATION_S, PHASES
from examples.demo.steering import RecordingClient
from examples.demo.timeline import Timeline

HOLDBACK_S = 2.0  # events this recent wait one more tick, so late arrivals from the shop still print in order
TICK_REAL_S = 0.05
ONE_SHOT_AT = re.compile(r"one-shot at \d{2}:\d{2}:\d{2}")


@dataclass
class Narration:
    """Turns the agent's decisions into timeline events, with its one-shot times in simulated time."""

    agent: FlashSaleAgent
    client: RecordingClient
    timeline: Timeline
    clock: SimClock
    told: int = 0
    one_shots_told: int = 0

    def step(self) -> None:
        """One agent step, its decisions told even when an RPC of it failed (the error propagates)."""
        try:
            self.agent.step()
        finally:
            self.tell_new()

    def tell_new(self) -> None:
        """Add the decisions made since the last call."""
        for moment, what in self.agent.decisions[self.told :]:
            self.timeline.add(self.clock.sim_s(moment), "agent", self._simulated(what))
        self.told = len(self.agent.decisions)

    def _simulated(self, what: str) -> str:
        # The agent names the one-shot's wall-clock time; each such decision follows one ScheduleOneShotRun.
        if not ONE_SHOT_AT.search(what) or self.one_shots_told >= len(self.client.one_shots):
            return what
        request = self.client.one_shots[self.one_shots_told]
        self.one_shots_told += 1
        return ONE_SHOT_AT.sub(f"one-shot at {mmss(request.scheduled_s)}", what)


class Steps(Protocol):
    """What runs every 10 simulated seconds: the agent (`Narration`) or the policy watcher."""

    def step(self) -> None: ...


@dataclass
class Player:
    """Plays the scenario until its end in simulated time."""

    narration: Steps
    clock: SimClock
    timeline: Timeline
    holdback_s: float = HOLDBACK_S  # the watcher learns of a change up to one step late: it holds back a step more
    phases_told: int = 0
    next_step_s: float = AGENT_STEP_S
    steps: int = 0
    errors: list[str] = field(default_factory=list)

    def play(self, until_s: float = DURATION_S) -> None:
        """Step the agent, announce phases and print the timeline until simulated second `until_s`."""
        while (now_s := self.clock.now_s()) < until_s:
            self._announce_phases(now_s)
            if now_s >= self.next_step_s:
                self._step(now_s)
            self.timeline.flush(now_s - self.holdback_s)
            wait_s = self.clock.real_s(min(self.next_step_s, until_s) - self.clock.now_s())
            time.sleep(min(max(wait_s, 0.0), TICK_REAL_S))
        self._announce_phases(until_s)
        self.timeline.flush(until_s)

    def _announce_phases(self, now_s: float) -> None:
        while self.phases_told < len(PHASES) and PHASES[self.phases_told].starts_s <= now_s:
            phase = PHASES[self.phases_told]
            self.timeline.add(phase.starts_s, "phase", f"{phase.name.upper()}: {phase.describe()}")
            self.phases_told += 1

    def _step(self, now_s: float) -> None:
        self.steps += 1
        try:
            self.narration.step()
        except grpc.RpcError as error:  # shown and counted; the summary's checks will tell what it cost
            self.errors.append(f"{mmss(now_s)} {error.code().name}")
            self.timeline.add(now_s, "agent", f"step failed: {error.code().name}")
        # Steps stay on the 10 s grid; a step that overran skips the slots it missed rather than bunching up.
        self.next_step_s = (math.floor(self.clock.now_s() / AGENT_STEP_S) + 1) * AGENT_STEP_S
