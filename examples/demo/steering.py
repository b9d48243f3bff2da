"""What the agent asked Pacer for, in simulated time: a client wrapper that records every one-shot request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from examples.demo.clock import SimClock
from pacer.control.v1 import control_service_pb2 as pb


@dataclass(frozen=True)
class OneShotRequest:
    """A ScheduleOneShotRun the agent made: when it asked and when Pacer scheduled the run (simulated seconds)."""

    endpoint_id: str
    asked_s: float
    scheduled_s: float


@dataclass
class RecordingClient:
    """Forwards every RPC to `pacer` (call them by name, like `examples.pacer_client.Pacer`); keeps `one_shots`."""

    pacer: Any
    clock: SimClock
    one_shots: list[OneShotRequest] = field(default_factory=list)

    def __getattr__(self, rpc: str) -> Callable[[Any], Any]:
        call: Callable[[Any], Any] = getattr(self.pacer, rpc)
        if rpc != "ScheduleOneShotRun":
            return call
        return self._recording(call)

    def _recording(self, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def schedule(request: pb.ScheduleOneShotRunRequest) -> pb.ScheduleOneShotRunResponse:
            asked_s = self.clock.now_s()
            answer: pb.ScheduleOneShotRunResponse = call(request)
            scheduled_s = self.clock.sim_s(answer.scheduled_for.ToDatetime(tzinfo=UTC))
            self.one_shots.append(OneShotRequest(request.endpoint_id, asked_s, scheduled_s))
            return answer

        return schedule
