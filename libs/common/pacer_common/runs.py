"""The status of a run: one enum for the database, the schedule's transitions, metrics and the wire.

The values are the words stored in `runs.status` and used as the `status` label of `pacer_runs_total`; the proto
enum `pacer.control.v1.RunStatus` is reached through `to_proto` / `from_proto` and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pacer.control.v1 import control_service_pb2 as pb


class RunStatus(StrEnum):
    """Where a run stands: RUNNING until it settles with one of the final statuses."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"  # the target answered 2xx
    FAILURE = "FAILURE"  # a non-2xx answer, or the request failed
    TIMEOUT = "TIMEOUT"  # no complete answer within the endpoint's timeout
    LOST = "LOST"  # the executor or scheduler died: the outcome is unknown
    BLOCKED = "BLOCKED"  # the egress policy refused the target; nothing was sent

    @property
    def is_final(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def is_failure(self) -> bool:
        """A final status other than SUCCESS: it counts towards the endpoint's failure backoff."""
        return self.is_final and self is not RunStatus.SUCCESS


FINAL: Final = tuple(status for status in RunStatus if status.is_final)
FAILURES: Final = tuple(status for status in RunStatus if status.is_failure)
# What an executor may report; LOST is only ever decided by the control plane.
REPORTABLE: Final = (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.TIMEOUT, RunStatus.BLOCKED)

_TO_PROTO: Final[dict[RunStatus, pb.RunStatus.ValueType]] = {
    RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
    RunStatus.SUCCESS: pb.RUN_STATUS_SUCCESS,
    RunStatus.FAILURE: pb.RUN_STATUS_FAILURE,
    RunStatus.TIMEOUT: pb.RUN_STATUS_TIMEOUT,
    RunStatus.LOST: pb.RUN_STATUS_LOST,
    RunStatus.BLOCKED: pb.RUN_STATUS_BLOCKED,
}
_FROM_PROTO: Final = {number: status for status, number in _TO_PROTO.items()}


def to_proto(status: RunStatus) -> pb.RunStatus.ValueType:
    """The wire value of `status`."""
    return _TO_PROTO[status]


def from_proto(number: int) -> RunStatus:
    """The status a wire value names; ValueError for RUN_STATUS_UNSPECIFIED or a number this release does not know."""
    try:
        return _FROM_PROTO[number]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"not a run status: {number}") from None
