"""The ControlService gRPC handlers: decode, call one action, encode. Nothing else lives here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeAlias, TypeVar

import grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer_control import codec
from pacer_control.actions import ControlActions
from pacer_control.auth import Authenticator, Principal
from pacer_control.quotas import QuotaGuard

T = TypeVar("T")
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

    async def authenticate(self, context: Context) -> None:
        """Check the caller's key (raises Unauthenticated); the guard calls it before refusing a garbled request."""
        metadata = context.invocation_metadata()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._auth.authenticate, metadata)

    async def _run(self, context: Context, work: Callable[[Principal], T]) -> T:
        """Authenticate the caller, apply its rate limit and run `work` for it on the database pool.

        `work` also decodes what it needs from the request, so nothing of a request is looked at before its caller
        is known. Errors propagate to the server's StatusGuard, which answers them.
        """
        metadata = context.invocation_metadata()

        def call() -> T:
            who = self._auth.authenticate(metadata)
            self._quotas.admit(who.tenant_id)
            return work(who)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def CreateJob(self, request: pb.CreateJobRequest, context: Context) -> pb.CreateJobResponse:
        job = await self._run(context, lambda who: self._actions.create_job(who, request.name, request.description))
        return pb.CreateJobResponse(job_id=job.id, created_at=codec.ts(job.created_at))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        view = await self._run(context, lambda who: self._actions.get_job(who, request.job_id))
        return pb.GetJobResponse(job=codec.job(view))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        page = await self._run(
            context,
            lambda who: self._actions.list_jobs(
                who, codec.job_status_filter(request.status), request.page_size, request.page_token
            ),
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
        endpoint = await self._run(
            context,
            lambda who: self._actions.add_endpoint(who, request.job_id, codec.endpoint_spec(request), request.reason),
        )
        return pb.AddEndpointToJobResponse(endpoint_id=endpoint.id, next_run_at=codec.ts(endpoint.next_run_at))

    async def UpdateEndpointConfig(
        self, request: pb.UpdateEndpointConfigRequest, context: Context
    ) -> pb.UpdateEndpointConfigResponse:
        endpoint = await self._run(
            context,
            lambda who: self._actions.update_endpoint(
                who, request.endpoint_id, codec.endpoint_changes(request), request.reason
            ),
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
        # Encoded on the database pool too: a job may have thousands of endpoints, the event loop is not held up.
        return await self._run(
            context, lambda who: codec.endpoint_list(self._actions.list_job_endpoints(who, request.job_id))
        )

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
        ttl = request.ttl_minutes if request.HasField("ttl_minutes") else None
        scheduled = await self._run(
            context,
            lambda who: self._actions.schedule_one_shot(
                who, request.endpoint_id, codec.moment(request, "run_at"), ttl, request.reason
            ),
        )
        return pb.ScheduleOneShotRunResponse(scheduled_for=codec.ts(scheduled))

    async def PauseOrResumeEndpoint(
        self, request: pb.PauseOrResumeEndpointRequest, context: Context
    ) -> pb.PauseOrResumeEndpointResponse:
        state = await self._run(
            context,
            lambda who: self._actions.pause_or_resume(
                who, request.endpoint_id, codec.moment(request, "pause_until"), request.resume, request.reason
            ),
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
        runs, total = await self._run(
            context,
            lambda who: self._actions.list_runs(
                who,
                job_id=request.job_id if request.HasField("job_id") else None,
                endpoint_id=request.endpoint_id if request.HasField("endpoint_id") else None,
                status=codec.run_status_filter(request.status),
                limit=request.limit,
                offset=request.offset,
            ),
        )
        return pb.ListRunsResponse(runs=[codec.run_summary(r) for r in runs], total=total)

    async def GetRunDetails(self, request: pb.GetRunDetailsRequest, context: Context) -> pb.GetRunDetailsResponse:
        record, firings = await self._run(context, lambda who: self._actions.get_run_details(who, request.run_id))
        return pb.GetRunDetailsResponse(run=codec.run(record, firings))

    async def SummarizeEndpointHealth(
        self, request: pb.SummarizeEndpointHealthRequest, context: Context
    ) -> pb.SummarizeEndpointHealthResponse:
        view = await self._run(
            context, lambda who: self._actions.endpoint_health(who, request.endpoint_id, request.window_hours)
        )
        return codec.health(view)

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        page = await self._run(
            context,
            lambda who: self._actions.list_audit_records(
                who, request.job_id, request.endpoint_id, request.page_size, request.page_token
            ),
        )
        return pb.ListAuditRecordsResponse(
            records=[codec.audit_record(r) for r in page.records], next_page_token=page.next_page_token
        )
