"""The ControlService gRPC handlers: decode, call one action, encode. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeAlias, TypeVar

import grpc
from sqlalchemy.exc import OperationalError

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer_common.errors import PacerError
from pacer_common.logs import first_line
from pacer_common.status import to_grpc_status
from pacer_control import codec
from pacer_control.actions import ControlActions
from pacer_control.auth import Authenticator, Principal
from pacer_control.quotas import QuotaGuard

T = TypeVar("T")
log = logging.getLogger(__name__)
Context: TypeAlias = grpc.aio.ServicerContext


class ControlApi(pb_grpc.ControlServiceServicer):
    """pacer.control.v1.ControlService over ControlActions; database work runs on `pool`."""

    def __init__(
        self, actions: ControlActions, authenticator: Authenticator, quotas: QuotaGuard, pool: Executor
    ) -> None:
        self._actions = actions
        self._auth = authenticator
        self._quotas = quotas
        self._pool = pool

    async def _run(self, context: Context, work: Callable[[Principal], T]) -> T:
        """Authenticate the caller, apply its rate limit and run `work` for it; errors abort with their status."""
        metadata = context.invocation_metadata()

        def call() -> T:
            who = self._auth.authenticate(metadata)
            self._quotas.admit(who.tenant_id)
            return work(who)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except PacerError as error:
            await context.abort_with_status(to_grpc_status(error))
        except OperationalError as error:
            # The first line names the failure; statement parameters never appear (the engine hides them).
            log.error("database unavailable", extra={"event": "db.unavailable", "error": first_line(error)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable, retry later")
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    async def CreateJob(self, request: pb.CreateJobRequest, context: Context) -> pb.CreateJobResponse:
        job = await self._run(context, lambda who: self._actions.create_job(who, request.name, request.description))
        return pb.CreateJobResponse(job_id=job.id, created_at=codec.ts(job.created_at))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        view = await self._run(context, lambda who: self._actions.get_job(who, request.job_id))
        return pb.GetJobResponse(job=codec.job(view))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        status = codec.JOB_STATUS_FILTERS.get(request.status)
        page = await self._run(
            context, lambda who: self._actions.list_jobs(who, status, request.page_size, request.page_token)
        )
        return pb.ListJobsResponse(jobs=[codec.job_summary(v) for v in page.jobs], next_page_token=page.next_page_token)

    async def UpdateJob(self, request: pb.UpdateJobRequest, context: Context) -> pb.UpdateJobResponse:
        name = request.name if request.HasField("name") else None
        description = request.description if request.HasField("description") else None
        updated = await self._run(
            context, lambda who: self._actions.update_job(who, request.job_id, name, description, request.reason)
        )
        return pb.UpdateJobResponse(updated_at=codec.ts(updated))

    async def ArchiveJob(self, request: pb.ArchiveJobRequest, context: Context) -> pb.ArchiveJobResponse:
        archived = await self._run(context, lambda who: self._actions.archive_job(who, request.job_id, request.reason))
        return pb.ArchiveJobResponse(archived_at=codec.ts(archived))

    async def AddEndpointToJob(
        self, request: pb.AddEndpointToJobRequest, context: Context
    ) -> pb.AddEndpointToJobResponse:
        spec = codec.endpoint_spec(request)
        endpoint = await self._run(
            context, lambda who: self._actions.add_endpoint(who, request.job_id, spec, request.reason)
        )
        return pb.AddEndpointToJobResponse(endpoint_id=endpoint.id, next_run_at=codec.ts(endpoint.next_run_at))

    async def UpdateEndpointConfig(
        self, request: pb.UpdateEndpointConfigRequest, context: Context
    ) -> pb.UpdateEndpointConfigResponse:
        changes = codec.endpoint_changes(request)
        endpoint = await self._run(
            context, lambda who: self._actions.update_endpoint(who, request.endpoint_id, changes, request.reason)
        )
        return pb.UpdateEndpointConfigResponse(
            updated_at=codec.ts(endpoint.updated_at), next_run_at=codec.ts(endpoint.next_run_at)
        )

    async def DeleteEndpoint(self, request: pb.DeleteEndpointRequest, context: Context) -> pb.DeleteEndpointResponse:
        deleted = await self._run(
            context, lambda who: self._actions.delete_endpoint(who, request.endpoint_id, request.reason)
        )
        return pb.DeleteEndpointResponse(deleted_at=codec.ts(deleted))

    async def ListJobEndpoints(
        self, request: pb.ListJobEndpointsRequest, context: Context
    ) -> pb.ListJobEndpointsResponse:
        endpoints = await self._run(context, lambda who: self._actions.list_job_endpoints(who, request.job_id))
        return pb.ListJobEndpointsResponse(endpoints=[codec.endpoint_summary(e) for e in endpoints])

    async def ApplyIntervalHint(
        self, request: pb.ApplyIntervalHintRequest, context: Context
    ) -> pb.ApplyIntervalHintResponse:
        ttl = request.ttl_minutes if request.HasField("ttl_minutes") else None
        endpoint = await self._run(
            context,
            lambda who: self._actions.apply_interval_hint(
                who, request.endpoint_id, request.interval_ms, ttl, request.reason
            ),
        )
        return pb.ApplyIntervalHintResponse(
            hint_expires_at=codec.ts(endpoint.hint_expires_at), next_run_at=codec.ts(endpoint.next_run_at)
        )

    async def ScheduleOneShotRun(
        self, request: pb.ScheduleOneShotRunRequest, context: Context
    ) -> pb.ScheduleOneShotRunResponse:
        run_at = codec.moment(request, "run_at")
        ttl = request.ttl_minutes if request.HasField("ttl_minutes") else None
        scheduled = await self._run(
            context,
            lambda who: self._actions.schedule_one_shot(who, request.endpoint_id, run_at, ttl, request.reason),
        )
        return pb.ScheduleOneShotRunResponse(scheduled_for=codec.ts(scheduled))

    async def PauseOrResumeEndpoint(
        self, request: pb.PauseOrResumeEndpointRequest, context: Context
    ) -> pb.PauseOrResumeEndpointResponse:
        until = codec.moment(request, "pause_until")
        state = await self._run(
            context,
            lambda who: self._actions.pause_or_resume(who, request.endpoint_id, until, request.resume, request.reason),
        )
        return pb.PauseOrResumeEndpointResponse(
            paused=state.paused, paused_until=codec.ts(state.paused_until), next_run_at=codec.ts(state.next_run_at)
        )

    async def ClearAdaptiveHints(
        self, request: pb.ClearAdaptiveHintsRequest, context: Context
    ) -> pb.ClearAdaptiveHintsResponse:
        cleared, endpoint = await self._run(
            context, lambda who: self._actions.clear_hints(who, request.endpoint_id, request.reason)
        )
        return pb.ClearAdaptiveHintsResponse(cleared_at=codec.ts(cleared), next_run_at=codec.ts(endpoint.next_run_at))

    async def ResetFailureCount(
        self, request: pb.ResetFailureCountRequest, context: Context
    ) -> pb.ResetFailureCountResponse:
        endpoint = await self._run(
            context, lambda who: self._actions.reset_failures(who, request.endpoint_id, request.reason)
        )
        return pb.ResetFailureCountResponse(
            failure_count=endpoint.failure_count, next_run_at=codec.ts(endpoint.next_run_at)
        )

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        status = codec.RUN_STATUS_FILTERS.get(request.status, "all")
        runs, total = await self._run(
            context,
            lambda who: self._actions.list_runs(
                who,
                job_id=request.job_id if request.HasField("job_id") else None,
                endpoint_id=request.endpoint_id if request.HasField("endpoint_id") else None,
                status=status,
                limit=request.limit,
                offset=request.offset,
            ),
        )
        return pb.ListRunsResponse(runs=[codec.run_summary(r) for r in runs], total=total)

    async def GetRunDetails(self, request: pb.GetRunDetailsRequest, context: Context) -> pb.GetRunDetailsResponse:
        record = await self._run(context, lambda who: self._actions.get_run(who, request.run_id))
        return pb.GetRunDetailsResponse(run=codec.run(record))

    async def SummarizeEndpointHealth(
        self, request: pb.SummarizeEndpointHealthRequest, context: Context
    ) -> pb.SummarizeEndpointHealthResponse:
        view = await self._run(
            context, lambda who: self._actions.endpoint_health(who, request.endpoint_id, request.window_hours)
        )
        return codec.health(view)
