"""The internal LeaseService: schedulers claim due runs, report results in batches, extend leases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import TypeVar

import grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_common import retries, runs
from pacer_common.clock import Clock
from pacer_common.credentials import ServiceGate
from pacer_common.errors import PermissionDenied
from pacer_common.retries import Attempt
from pacer_control.codec import moment, retry_policy, ts
from pacer_control.metrics import ControlMetrics
from pacer_control.pipeline import ClaimedRun, LostRun, Pipeline, Recorded, RunResult, missed_when_lost
from pacer_control.validation import Checks

T = TypeVar("T")
log = logging.getLogger("pacer.control.leases")
MAX_HORIZON_MS = 60_000
MAX_CLAIM = 5000
MAX_BATCH = 5000
MAX_SESSION_ID = 64
MAX_SCHEDULER_ID = 200
REPORTABLE = frozenset(runs.to_proto(status) for status in runs.REPORTABLE)
_REPORTABLE_TEXT = "must be SUCCESS, FAILURE, TIMEOUT or BLOCKED"


def work_item(run: ClaimedRun) -> lease_pb.WorkItem:
    return lease_pb.WorkItem(
        run_id=run.run_id,
        endpoint_id=run.endpoint_id,
        tenant_id=run.tenant_id,
        scheduled_for=ts(run.scheduled_for),
        lease_expires_at=ts(run.lease_expires_at),
        url=run.url,
        method=run.method,
        headers=run.headers,
        body=run.body,
        timeout_ms=run.timeout_ms,
        start_at=ts(run.start_at),
        signing_secrets=run.signing_secrets,
        job_id=run.job_id,
        retry=retry_policy(run.retry) if run.retry.retries else None,
    )


def run_result(message: lease_pb.RunResult, index: int) -> RunResult:
    path = f"results[{index}]."
    finished = moment(message, "finished_at", path)
    assert finished is not None
    return RunResult(
        run_id=message.run_id,
        status=runs.from_proto(message.status),
        started_at=moment(message, "started_at", path),
        finished_at=finished,
        duration_ms=message.duration_ms,
        http_status=message.http_status,
        error_message=message.error_message,
        response_body=message.response_body,
        response_truncated=message.response_truncated,
        attempts=tuple(_attempt(sent, f"{path}attempts[{n}].") for n, sent in enumerate(message.attempts)),
    )


def _attempt(message: pb.RunAttempt, path: str) -> Attempt:
    return Attempt(
        number=message.number,
        status=runs.from_proto(message.status),
        started_at=moment(message, "started_at", path),
        duration_ms=message.duration_ms,
        http_status=message.http_status,
        error_message=message.error_message,
    )


def _check_session_id(checks: Checks, session_id: str) -> None:
    if not 0 < len(session_id) <= MAX_SESSION_ID or not session_id.isascii() or not session_id.isprintable():
        checks.fail("session_id", f"must be 1 to {MAX_SESSION_ID} printable ASCII characters")


def _check_results(results: list[lease_pb.RunResult], request: lease_pb.ReportResultsRequest) -> None:
    checks = Checks()
    for field, count in (
        ("results", len(results)),
        ("held_run_ids", len(request.held_run_ids)),
        ("vanished_run_ids", len(request.vanished_run_ids)),
        ("released_run_ids", len(request.released_run_ids)),
    ):
        if count > MAX_BATCH:
            checks.fail(field, f"at most {MAX_BATCH} per batch")
    for index, result in enumerate(results):
        if result.status not in REPORTABLE:
            checks.fail(f"results[{index}].status", _REPORTABLE_TEXT)
        if not result.HasField("finished_at"):
            checks.fail(f"results[{index}].finished_at", "is required")
        if len(result.attempts) > retries.MAX_ATTEMPTS:
            checks.fail(f"results[{index}].attempts", f"at most {retries.MAX_ATTEMPTS}")
        for number, attempt in enumerate(result.attempts):
            if attempt.status not in REPORTABLE:
                checks.fail(f"results[{index}].attempts[{number}].status", _REPORTABLE_TEXT)
    checks.done()


class LeaseApi(lease_grpc.LeaseServiceServicer):
    """pacer.internal.v1.LeaseService over the pipeline; only the service credential may call it.

    Runs settled by reported results are counted in `metrics` (`pacer_runs_total`), with the slots their re-plans
    found missed (`pacer_runs_missed_total`).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        clock: Clock,
        auth: ServiceGate,
        pool: Executor,
        lease_grace_ms: int,
        metrics: ControlMetrics,
        needs_client_cert: bool = False,
        session_ttl_ms: int = 3000,
    ) -> None:
        self._needs_client_cert = needs_client_cert
        self._session_ttl_ms = session_ttl_ms
        self._pipeline = pipeline
        self._clock = clock
        self._auth = auth
        self._pool = pool
        self._grace_ms = lease_grace_ms
        self._metrics = metrics

    async def authenticate(self, context: grpc.aio.ServicerContext) -> None:
        """Check the caller (certificate where required, then the service token); raises a PacerError."""
        if self._needs_client_cert and "x509_pem_cert" not in (context.auth_context() or {}):
            # The public port speaks server-only TLS; internal traffic belongs on the mutual-TLS port.
            raise PermissionDenied("internal RPCs need the mutual-TLS internal port")
        self._auth.check(context.invocation_metadata())

    async def _run(self, context: grpc.aio.ServicerContext, work: Callable[[], T]) -> T:
        """Authenticate, then run `work` on the database pool; errors propagate to the server's StatusGuard."""
        await self.authenticate(context)
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def ClaimDueRuns(
        self, request: lease_pb.ClaimDueRunsRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb.ClaimDueRunsResponse:
        checks = Checks()
        checks.in_range(request.horizon_ms, "horizon_ms", 0, MAX_HORIZON_MS)
        checks.in_range(request.limit, "limit", 0, MAX_CLAIM)
        _check_session_id(checks, request.session_id)
        if len(request.claim_id) > MAX_SESSION_ID or not request.claim_id.isprintable():
            checks.fail("claim_id", f"must be at most {MAX_SESSION_ID} printable characters")

        def claim() -> tuple[list[ClaimedRun], datetime]:
            checks.done()
            now = self._clock.now()
            runs = self._pipeline.claim_due(
                now, request.horizon_ms, request.limit, self._grace_ms, request.session_id, request.claim_id
            )
            return runs, now

        runs, now = await self._run(context, claim)
        return lease_pb.ClaimDueRunsResponse(items=[work_item(r) for r in runs], now=ts(now))

    async def ReportResults(
        self, request: lease_pb.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb.ReportResultsResponse:
        results = list(request.results)

        def report() -> tuple[Recorded, list[LostRun]]:
            _check_results(results, request)
            decoded = [run_result(r, index) for index, r in enumerate(results)]
            # Held first: a run an executor holds is never settled as vanished, even by this same batch.
            self._pipeline.mark_held(list(request.held_run_ids))
            now = self._clock.now()
            recorded = self._pipeline.record_results(decoded, now)
            vanished = self._pipeline.settle_vanished(list(request.vanished_run_ids), now)
            self._pipeline.release_unbegun(list(request.released_run_ids))
            return recorded, vanished

        recorded, vanished = await self._run(context, report)
        self._metrics.runs_settled(recorded.settled)
        self._metrics.tenant_runs_settled(recorded.by_tenant)
        self._metrics.runs_missed(recorded.missed)
        self._metrics.runs_vanished(len(vanished), [run.tenant_id for run in vanished])
        self._metrics.runs_missed(missed_when_lost(vanished))
        for run in vanished:
            log.warning(
                "run lost: the executor running it vanished",
                extra={"event": "run.vanished", "run_id": run.run_id, "endpoint_id": run.endpoint_id},
            )
        return lease_pb.ReportResultsResponse(applied=recorded.applied, stale=recorded.stale)

    async def Heartbeat(
        self, request: lease_pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb.HeartbeatResponse:
        checks = Checks()
        _check_session_id(checks, request.session_id)
        checks.text(request.scheduler_id, "scheduler_id", MAX_SCHEDULER_ID)

        def beat() -> datetime:
            checks.done()
            now = self._clock.now()
            ttl = timedelta(milliseconds=self._session_ttl_ms)
            self._pipeline.heartbeat(request.session_id, request.scheduler_id, now, ttl, closing=request.closing)
            return now

        now = await self._run(context, beat)
        return lease_pb.HeartbeatResponse(ttl_ms=self._session_ttl_ms, now=ts(now))

    async def ExtendLeases(
        self, request: lease_pb.ExtendLeasesRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb.ExtendLeasesResponse:
        def extend() -> list[str]:
            checks = Checks()
            checks.in_range(request.extend_ms, "extend_ms", 1000, 3_600_000)
            if len(request.run_ids) > MAX_BATCH:
                checks.fail("run_ids", f"at most {MAX_BATCH} per call")
            checks.done()
            until = self._clock.now() + timedelta(milliseconds=request.extend_ms)
            return self._pipeline.extend_leases(list(request.run_ids), until)

        return lease_pb.ExtendLeasesResponse(extended_run_ids=await self._run(context, extend))
