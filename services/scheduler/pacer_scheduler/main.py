"""Composition root of the scheduler: settings -> control channel, timer, dispatcher, batcher, executor server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from prometheus_client import CollectorRegistry

from pacer_common.clock import Clock, SystemClock
from pacer_common.credentials import ServiceGate, service_token
from pacer_common.health import serving_health
from pacer_common.logs import configure_logging
from pacer_common.loops import run_on_loop
from pacer_common.ports import ListenError
from pacer_common.settings import load
from pacer_common.telemetry import ClientMetricsInterceptor, ServerMetricsInterceptor, new_registry, serve_metrics
from pacer_common.tls import client_tls_credentials, server_tls_credentials
from pacer_scheduler.claims import ClaimLoop, ClaimPolicy
from pacer_scheduler.dispatch import Dispatcher
from pacer_scheduler.lease_client import LeaseClient, control_channel
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.readiness import ControlReachability, LatestEvidence, lease_service_probe
from pacer_scheduler.results import ResultBatcher
from pacer_scheduler.retry import control_retry
from pacer_scheduler.server import build_server, readiness
from pacer_scheduler.session import ControlSession
from pacer_scheduler.settings import SchedulerSettings
from pacer_scheduler.stream import DispatchApi
from pacer_scheduler.timer import Timer

log = logging.getLogger("pacer.scheduler")

DRAIN_POLL_S = 0.05
FLUSH_GRACE_S = 5.0  # results still get this long to reach the control plane after a drain timed out
STREAM_GRACE_S = 2.0  # ending streams write what is queued on them (acks) within this
READINESS_POLL_S = 0.25  # how soon readiness shows a heartbeat's or claim's success or failure
# Calls older than this no longer say whether the control plane answers: a health check of it stands in.
CLAIM_EVIDENCE_S = 2.0
SWEEP_INTERVAL_S = 0.1  # how often vanished candidates whose grace ended are looked for


def _tls(settings: SchedulerSettings) -> tuple[grpc.ServerCredentials | None, grpc.ChannelCredentials | None]:
    """Credentials of the executor-facing server and of the channel to the control plane (None: plaintext)."""
    return server_tls_credentials(settings.tls), client_tls_credentials(settings.control_tls)


class Scheduler:
    """One scheduler, wired from settings: claims from the control plane, serves executors on `port`.

    Its metrics go to `registry` (a private one when None); it is ready (grpc.health.v1) while the control plane
    answers its heartbeats and claims (or, when neither called lately, a health check). It dispatches only while its
    session at the control plane is certainly alive (see pacer_scheduler.session).
    """

    def __init__(
        self, settings: SchedulerSettings, token: str, clock: Clock, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.metrics = SchedulerMetrics(
            registry, late_threshold_s=settings.late_threshold_ms / 1000, measured_jobs=settings.measured_jobs
        )
        server_tls, control_tls = _tls(settings)
        interceptor = ClientMetricsInterceptor(self.metrics.grpc_client)
        self._channel = control_channel(settings.control_addr, control_tls, [interceptor])
        lease_client = LeaseClient(self._channel, token, settings.identity)
        self._dispatching = True
        self.session = ControlSession(
            lease_client,
            self.metrics,
            margin_ms=settings.session_margin_ms,
            on_renewed=self._session_renewed,
            on_lost=self._session_lost,
        )
        self.dispatcher = Dispatcher(
            clock,
            self.metrics,
            vanish_grace_ms=settings.vanish_grace_ms,
            may_dispatch=lambda: self._dispatching and self.session.valid(),
        )
        self.timer = Timer(clock, self.dispatcher.release)
        self.batcher = ResultBatcher(
            lease_client, self.metrics, batch_size=settings.result_batch, flush_ms=settings.result_flush_ms
        )
        self.claims = ClaimLoop(
            lease_client,
            self.timer,
            self.pending,
            _policy(settings),
            self.session,
            metrics=self.metrics,
            staffed=lambda: self.dispatcher.accepting,
        )
        self._api = DispatchApi(self.dispatcher, self.batcher, ServiceGate(token))
        self._server, self.port, self.health = build_server(
            self._api,
            settings.scheduler_addr,
            credentials=server_tls,
            interceptors=[ServerMetricsInterceptor(self.metrics.grpc_server)],
        )
        self.readiness = readiness(self.health)
        evidence = LatestEvidence(self.claims, self.session)
        self._control = ControlReachability(evidence, lease_service_probe(self._channel), CLAIM_EVIDENCE_S)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopped = False
        self.crashed = asyncio.Event()

    def _watch(self, task: asyncio.Task[None]) -> None:
        # A loop that dies leaves the scheduler claiming without dispatching (or the reverse): say so loudly and
        # let `serve` drain and exit non-zero so the supervisor restarts the process.
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "scheduler task crashed",
            exc_info=task.exception(),
            extra={"event": "scheduler.crashed", "task": task.get_name()},
        )
        self.crashed.set()

    def pending(self) -> int:
        """Claimed runs not yet dispatched: held by the timer or waiting for executor credit (or the session)."""
        return len(self.timer) + self.dispatcher.ready

    def settled(self) -> bool:
        """True when every claimed run was dispatched, every dispatched run reported its result and the runs of
        ended streams were settled or reported vanished."""
        return self.pending() == 0 and self.dispatcher.in_flight == 0 and self.dispatcher.vanishing == 0

    def _session_renewed(self) -> None:
        # Due runs that waited for the session go out now rather than at the next release.
        self.dispatcher.pump()

    def _session_lost(self) -> None:
        # The control plane gave these runs back when it ended the session: another scheduler may hold them now.
        held, ready = self.timer.clear(), self.dispatcher.drop_ready()
        self.metrics.runs_dropped(held + ready)
        log.warning(
            "claimed runs dropped: their session ended",
            extra={"event": "session.runs_dropped", "timer": held, "ready": ready},
        )

    async def start(self) -> None:
        """Listen for executors and start the session, the timer, the batcher, the claim loop, the vanished sweep
        and readiness reporting (NOT_SERVING until the control plane answered)."""
        await self.readiness.start()
        await self._server.start()
        for name, work in (
            ("session", self.session.run),
            ("timer", self.timer.run),
            ("results", self.batcher.run),
            ("claims", self.claims.run),
            ("vanished", self._sweep_vanished),
            ("readiness", self._follow_control),
        ):
            task = asyncio.create_task(work(), name=f"scheduler-{name}")
            task.add_done_callback(self._watch)
            self._tasks[name] = task
        log.info(
            "scheduler serving",
            extra={"event": "scheduler.started", "port": self.port, "scheduler_id": self.settings.identity},
        )

    async def _follow_control(self) -> None:
        while True:
            await self.readiness.update(await self._control.reachable())
            await asyncio.sleep(READINESS_POLL_S)

    async def _sweep_vanished(self) -> None:
        while True:
            vanished = self.dispatcher.sweep()
            if vanished:
                self.batcher.put_vanished(vanished)
            expired = self.dispatcher.take_expired()
            if expired:
                self.batcher.put_released(expired)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def drain_and_stop(self) -> None:
        """Stop claiming, dispatch what was claimed, wait for results (up to drain_timeout_ms), then end the
        executor streams, flush what is left and close the session.

        Runs executors said they began and have not reported are reported held before the session closes, so the
        control plane never hands them out again; the others still claimed go back to due when it closes. Calling
        it again does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        log.info("scheduler draining", extra={"event": "scheduler.draining", "pending": self.pending()})
        await self.readiness.shutting_down()
        await _cancel(self._tasks["readiness"])
        self.claims.stop()
        await asyncio.wait([self._tasks["claims"]])  # lets a claim on the wire land; a crash was already logged
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout_ms / 1000
        while not self.settled() and loop.time() < deadline and self._can_progress():
            await asyncio.sleep(DRAIN_POLL_S)
        self._dispatching = False
        await self.batcher.delivered(max(deadline - loop.time(), 0.0))  # their acks go out on the open streams
        held = self.dispatcher.started_leftovers()
        self._api.close()
        await self._server.stop(STREAM_GRACE_S)
        await _cancel(self._tasks["vanished"])
        self.batcher.put_held(held)
        await self._flush(max(deadline - loop.time(), FLUSH_GRACE_S))
        await self.session.close()
        await asyncio.wait([self._tasks["session"]])
        await _cancel(self._tasks["timer"])
        await self._channel.close()
        log.info("scheduler stopped", extra={"event": "scheduler.stopped", "held": len(held), **self._leftovers()})

    def _can_progress(self) -> bool:
        """Whether waiting can still settle anything: an executor takes work, results are on their way, or runs of
        ended streams wait out their grace.

        With none of these, claimed runs have nowhere to go; waiting out the drain timeout would only delay the
        stop, and closing the session hands them back either way.
        """
        return self.dispatcher.accepting or self.dispatcher.in_flight > 0 or self.dispatcher.vanishing > 0

    async def _flush(self, timeout_s: float) -> None:
        self.batcher.close()
        task = self._tasks["results"]
        await asyncio.wait([task], timeout=timeout_s)
        await _cancel(task)

    def _leftovers(self) -> dict[str, int]:
        # Undispatched runs went back to due when the session closed; the rest settle by result or lease expiry.
        return {
            "undispatched": self.pending(),
            "vanishing": self.dispatcher.vanishing,
            "results_undelivered": len(self.batcher),
        }


def _policy(settings: SchedulerSettings) -> ClaimPolicy:
    return ClaimPolicy(
        horizon_ms=settings.claim_horizon_ms,
        interval_ms=settings.claim_interval_ms,
        batch=settings.claim_batch,
        max_pending=settings.max_pending,
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])  # never raises: the outcome was logged by Scheduler._watch


async def _token(settings: SchedulerSettings, stop: asyncio.Event) -> str | None:
    """The service token, waiting for the control plane to write its file; None if stopped first."""
    retry, warned = control_retry(), False
    while not stop.is_set():
        try:
            return service_token(settings.service_token, settings.var_dir, create=False)
        except FileNotFoundError as missing:
            if not warned:  # once: in the dev profile the control plane may simply still be starting
                log.warning(str(missing), extra={"event": "scheduler.token_missing"})
                warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry.next_delay_s())
    return None


async def serve(settings: SchedulerSettings, clock: Clock | None = None) -> int:
    """Run a scheduler until SIGTERM or SIGINT (exit status 0) or a crashed loop (1), draining it either way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    token = await _token(settings, stop)
    if token is None:
        return 0
    registry = new_registry()
    endpoint = serve_metrics(settings.operations.metrics_addr, registry, setting="PACER_METRICS_ADDR")
    scheduler = Scheduler(settings, token, clock or SystemClock(), registry)
    interceptors = [ServerMetricsInterceptor(scheduler.metrics.grpc_server)]
    async with serving_health(settings.operations.health_addr, scheduler.health, interceptors):
        await scheduler.start()
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(scheduler.crashed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        await scheduler.drain_and_stop()
    if endpoint is not None:
        endpoint.close()
    return 1 if scheduler.crashed.is_set() else 0


def main() -> None:
    try:
        settings = load(SchedulerSettings)
        _tls(settings)  # refuse bad TLS settings now, with a plain message, rather than as a traceback later
    except ValueError as error:
        raise SystemExit(f"pacer-scheduler: {error}") from None
    configure_logging(settings.operations.log_level)
    try:
        status = run_on_loop(serve(settings), settings.event_loop)
    except ListenError as error:
        raise SystemExit(f"pacer-scheduler: {error}") from None
    raise SystemExit(status)


if __name__ == "__main__":
    main()
