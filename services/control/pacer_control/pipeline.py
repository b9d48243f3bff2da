"""The run pipeline's SQL: claims of due runs, their results, leases, scheduler sessions and the expiry of both.

The hot path, in Core rather than the ORM. What a claim, a result, a lost run or a released run does to its
endpoint is decided by the pure `pacer_common.transitions`; this module locks the rows, maps them to schedule
states (`pacer_control.schedule`) and writes the new states back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Table, bindparam, cast, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pacer_common import jitter, retries, transitions
from pacer_common.errors import FailedPrecondition, shown
from pacer_common.ids import new_run_id
from pacer_common.retries import NO_RETRY, Attempt, RetryPolicy
from pacer_common.runs import RunStatus
from pacer_common.transitions import MISSED_OUTAGE, Claim, Missed, Outcome, Replanned
from pacer_common.urls import with_password
from pacer_control import schedule, signing
from pacer_control.models import Run
from pacer_control.sealing import EndpointSecrets, Keyring, SecretsError
from pacer_control.store import ENDPOINTS, JOB_ACTIVE, JOBS, RUNS, SESSIONS, Store, by_id_row, by_id_update

log = logging.getLogger("pacer.control.pipeline")

SESSION_RECORD = timedelta(days=1)
EXPIRED_MESSAGE = "lease expired before a result arrived; the call may have reached the target"
VANISHED_MESSAGE = "the executor running it vanished; the call may have reached the target"
SEALED_SHUT_MESSAGE = (
    "the endpoint's secrets do not open with the configured secrets keys; set its headers and URL again"
)
CLAIM_MAX_BYTES = 3 * 1024 * 1024  # under gRPC's default 4 MiB message limit, with room for the envelope


@dataclass(frozen=True)
class ClaimedRun:
    """A run created by a claim, with what an executor needs to perform it."""

    run_id: str
    endpoint_id: str
    tenant_id: str
    scheduled_for: datetime
    lease_expires_at: datetime
    url: str
    method: str
    headers: dict[str, str]
    body: str
    timeout_ms: int
    # False when the endpoint's secrets do not open with the configured keys: the run fails at once instead.
    sendable: bool = True
    # When the call starts: the slot plus the endpoint's jitter offset for it (pacer_common.jitter).
    start_at: datetime | None = None
    # The secrets that sign the request, newest first (pacer_control.signing); empty when unsigned.
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)
    job_id: str = ""
    # How the executor retries transient failures within the run; the lease covers every attempt.
    retry: RetryPolicy = NO_RETRY


@dataclass(frozen=True)
class RunResult:
    """An executor's report on one run."""

    run_id: str
    status: RunStatus
    started_at: datetime | None
    finished_at: datetime
    duration_ms: int = 0
    http_status: int = 0
    error_message: str = ""
    response_body: str = ""
    response_truncated: bool = False
    # Every attempt of a retried run, first to last; empty for a run of one attempt.
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class Recorded:
    """What a batch of results did: runs settled by it, by final status; results that settled nothing (stale: the run
    was already settled, or is unknown); and slots its re-plans found missed, by reason (MISSED_OVERRUN, ...)."""

    settled: Mapping[RunStatus, int]
    stale: int
    missed: Mapping[str, int] = field(default_factory=dict)
    # The same runs by (tenant, final status), for the per-tenant metrics.
    by_tenant: Mapping[tuple[str, RunStatus], int] = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return sum(self.settled.values())


@dataclass(frozen=True)
class LostRun:
    """A run settled as LOST: it may have reached its target, and its outcome is unknown.

    `missed_slots`: the slots its endpoint's re-plan found missed (always for the reason `outage`).
    """

    run_id: str
    endpoint_id: str
    tenant_id: str
    missed_slots: int = 0


def missed_when_lost(lost: Sequence[LostRun]) -> dict[str, int]:
    """The slots found missed when `lost` were settled, by reason: all `outage` (Pacer lost the run)."""
    return {MISSED_OUTAGE: sum(run.missed_slots for run in lost)}


@dataclass(frozen=True)
class EndedSession:
    """A scheduler session ended because its heartbeats stopped; `released` runs went back to due."""

    session_id: str
    scheduler_id: str
    released: int


# What each transition changes on the endpoint row (see pacer_common.transitions).
_CLAIMED_COLUMNS: Final = (
    "lease_run_id",
    "lease_expires_at",
    "anchor_at",
    "last_started_at",
    "oneshot_at",
    "oneshot_expires_at",
)
# What a claim writes into the run it creates (see `_run_row`).
_CLAIMED_RUN_COLUMNS: Final = (
    "session_id",
    "claim_id",
    "id",
    "tenant_id",
    "job_id",
    "endpoint_id",
    "status",
    "source",
    "attempt",
    "scheduled_for",
    "lease_expires_at",
)
_SETTLED_COLUMNS: Final = tuple(name for name in schedule.SCHEDULE_COLUMNS if name != "anchor_at")
_RELEASED_COLUMNS: Final = ("lease_run_id", "lease_expires_at")
_OUTCOME_COLUMNS: Final = (
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "http_status",
    "error_message",
    "response_body",
    "response_truncated",
)


def _unnest(table: Table, names: tuple[str, ...]) -> Any:
    """The rows `unnest(...) AS v(names)` of one array parameter `a_<name>` per column, typed as `table`'s column."""
    arrays = [cast(bindparam(f"a_{name}"), ARRAY(table.c[name].type)) for name in names]
    return func.unnest(*arrays).table_valued(*names).render_derived(name="v")


def _arrays(names: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of an `_unnest`: one list per column."""
    return {f"a_{name}": [row[name] for row in rows] for name in names}


class _RowsById:
    """An UPDATE of `columns` of many rows by primary key, each row with its own values.

    On PostgreSQL it is one statement over one array per column (`UPDATE ... FROM unnest(...)`): one plan and one
    parameter per column however many rows, where an executemany runs the statement once per row. Elsewhere
    (SQLite, in process) it is an executemany of `store.by_id_update`.
    """

    def __init__(self, table: Table, columns: tuple[str, ...]) -> None:
        self._columns = columns
        self._each = by_id_update(table, columns)
        source = _unnest(table, ("id", *columns))
        self._arrays = update(table).where(table.c.id == source.c.id).values({n: source.c[n] for n in columns})

    def execute(self, connection: Connection, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Write `rows`, each (primary key, {column: value}) naming every column."""
        if not rows:
            return
        if connection.dialect.name != "postgresql":
            connection.execute(self._each, [by_id_row(row_id, dict(values)) for row_id, values in rows])
            return
        arrays = _arrays(self._columns, [values for _, values in rows])
        arrays["a_id"] = [row_id for row_id, _ in rows]
        connection.execute(self._arrays, arrays)


class _NewRows:
    """An INSERT of many rows into `table`, each naming every one of `columns`: on PostgreSQL one
    `INSERT ... SELECT FROM unnest(...)` (see `_RowsById`), elsewhere an executemany."""

    def __init__(self, table: Table, columns: tuple[str, ...]) -> None:
        self._columns = columns
        self._each = insert(table)
        source = _unnest(table, columns)
        self._arrays = insert(table).from_select(columns, select(*(source.c[name] for name in columns)))

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if connection.dialect.name != "postgresql":
            connection.execute(self._each, rows)
            return
        connection.execute(self._arrays, _arrays(self._columns, rows))


_RUNS_INSERT = _NewRows(RUNS, _CLAIMED_RUN_COLUMNS)
_CLAIM_UPDATE = _RowsById(ENDPOINTS, _CLAIMED_COLUMNS)
_OUTCOME_UPDATE = _RowsById(RUNS, _OUTCOME_COLUMNS)
_SETTLE_UPDATE = _RowsById(ENDPOINTS, _SETTLED_COLUMNS)
_RELEASE_UPDATE = _RowsById(ENDPOINTS, _RELEASED_COLUMNS)
_ATTEMPTS_UPDATE = by_id_update(RUNS, ("attempts",))


class Pipeline(Store):
    """Runs from claim to final status, and the scheduler sessions that hold them on the way."""

    # Called after a batch of results commits, with the runs it settled whose endpoints have rules (see `on_recorded`).
    _recorded_listener: Callable[[Sequence[str]], None] | None = None

    def on_recorded(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Call `listener` with the ids of the runs each result batch settled on endpoints that have rules, after the
        batch commits. It must return at once (it runs on the result path): `pacer_control.policies` queues them."""
        self._recorded_listener = listener

    # -- claims and results ------------------------------------------------------------------------------------------

    def claim_due(
        self,
        now: datetime,
        horizon_ms: int,
        limit: int,
        lease_grace_ms: int,
        session_id: str | None = None,
        claim_id: str | None = None,
    ) -> list[ClaimedRun]:
        """Lease up to `limit` endpoints due within the horizon and create a RUNNING run for each.

        The hot path: three statements in one transaction. `FOR UPDATE SKIP LOCKED` lets concurrent claimers on
        PostgreSQL take disjoint sets; SQLite serializes them. The runs belong to the scheduler session
        `session_id`, which must be open (FailedPrecondition otherwise): the session's row is read under a share
        lock, so a session cannot end while a claim into it commits.

        A claim sent again with the same `claim_id` (its answer was lost) gets the runs that claim took, those
        still running, instead of new ones; that lookup is one more statement of the same transaction.
        """
        due_by = now + timedelta(milliseconds=horizon_ms)
        query = (
            select(ENDPOINTS)
            .where(ENDPOINTS.c.next_run_at <= due_by, ENDPOINTS.c.lease_run_id.is_(None))
            .order_by(ENDPOINTS.c.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        with self._engine.begin() as connection:
            if session_id is not None and claim_id:
                again = _claimed_before(connection, session_id, claim_id, self._keyring, now)
                if again:
                    return again
            if session_id is not None:
                _require_open_session(connection, session_id)
            rows = _within_bytes(connection.execute(query).all(), CLAIM_MAX_BYTES)
            if not rows:
                return []
            taken = [(row, _claim(row, now, lease_grace_ms)) for row in rows]
            _RUNS_INSERT.execute(connection, [_run_row(row, claim, session_id, claim_id) for row, claim in taken])
            _CLAIM_UPDATE.execute(connection, [_leased_row(row.id, claim) for row, claim in taken])
            claims = [_claimed_run(row, claim, self._keyring, now) for row, claim in taken]
            sealed_shut = [claim for claim in claims if not claim.sendable]
            if sealed_shut:
                _fail_sealed_shut(connection, sealed_shut, now)
            return [claim for claim in claims if claim.sendable]

    def record_results(self, results: Sequence[RunResult], now: datetime) -> Recorded:
        """Store a batch of outcomes in one transaction; only a result that still holds its lease moves the schedule.

        Idempotent: a result for a run already settled with a final status changes nothing (a scheduler retrying a
        report whose reply was lost sends the same result again), except that a result for a run settled LOST (its
        outcome was unknown) fills in the real outcome, noted as reported after the run was settled as lost; the
        schedule does not move again. Returns the runs the batch settled, by status; how many results were stale
        (settled nothing: the run was already settled, or is unknown); and the slots the re-plans found missed.
        """
        if not results:
            return Recorded({}, 0)
        by_run = {result.run_id: result for result in results}
        query = (
            select(RUNS.c.id, RUNS.c.status, RUNS.c.endpoint_id, RUNS.c.tenant_id, RUNS.c.error_message)
            .where(RUNS.c.id.in_(by_run))
            .order_by(RUNS.c.id)
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            runs = connection.execute(query).all()
            live = [run for run in runs if run.status == RunStatus.RUNNING]
            lost = [run for run in runs if run.status == RunStatus.LOST]
            outcomes = [_outcome_row(by_run[run.id]) for run in live]
            outcomes += [_found_after_lost_row(run, by_run[run.id]) for run in lost]
            _OUTCOME_UPDATE.execute(connection, outcomes)
            _record_attempts(connection, [by_run[run.id] for run in (*live, *lost)])
            ruled: list[str] = []
            missed = _settle(connection, {run.endpoint_id: _outcome_of(by_run[run.id]) for run in live}, now, ruled)
        if ruled and self._recorded_listener is not None:
            try:
                self._recorded_listener(ruled)
            except Exception:  # the batch is committed: nothing a rule does may fail its report
                log.exception("recorded runs not handed to the rules", extra={"event": "policy.handoff_failed"})
        by_reason = Counter[str]()
        for slots in missed.values():
            by_reason[slots.reason] += slots.count
        settled = Counter(RunStatus(by_run[run.id].status) for run in live)
        by_tenant = Counter((run.tenant_id, RunStatus(by_run[run.id].status)) for run in live)
        return Recorded(settled, len(results) - len(live), by_reason, by_tenant)

    def extend_leases(self, run_ids: Sequence[str], until: datetime) -> list[str]:
        """Move the lease of each RUNNING run (and its endpoint) to `until`; returns the runs extended."""
        with self._tx() as s:
            runs = list(s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == RunStatus.RUNNING)))
            for run in runs:
                run.lease_expires_at = until
            extended = [run.id for run in runs]
            s.execute(update(ENDPOINTS).where(ENDPOINTS.c.lease_run_id.in_(extended)).values(lease_expires_at=until))
            return extended

    # -- scheduler sessions: runs a dead scheduler never handed out go back to due at once -------------------------

    def heartbeat(self, session_id: str, scheduler_id: str, now: datetime, ttl: timedelta, *, closing: bool) -> None:
        """Open or renew a scheduler's session until `now + ttl`; `closing` ends it now and releases its runs.

        FailedPrecondition when the session was already ended: its runs were released, so whatever the scheduler
        still holds undispatched must be dropped.
        """
        renewal = {"heartbeat_at": now, "expires_at": now + ttl}
        with self._engine.begin() as connection:
            # Open it if new (a concurrent first heartbeat may open it too: then this one renews it), then lock it.
            opening = _insert_for(connection).values(
                id=session_id, scheduler_id=scheduler_id, started_at=now, **renewal
            )
            connection.execute(opening.on_conflict_do_nothing(index_elements=["id"]))
            session = connection.execute(
                select(SESSIONS.c.ended_at).where(SESSIONS.c.id == session_id).with_for_update()
            ).one()
            if session.ended_at is not None:
                raise _session_ended(session_id)
            connection.execute(update(SESSIONS).where(SESSIONS.c.id == session_id).values(**renewal))
            if closing:
                _end_session(connection, session_id, now)

    def end_expired_sessions(self, now: datetime, limit: int) -> list[EndedSession]:
        """End up to `limit` sessions whose scheduler stopped renewing them, releasing their runs; returns them."""
        query = (
            select(SESSIONS.c.id, SESSIONS.c.scheduler_id)
            .where(SESSIONS.c.ended_at.is_(None), SESSIONS.c.expires_at < now)
            .order_by(SESSIONS.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as connection:
            sessions = connection.execute(query).all()
            ended = [EndedSession(row.id, row.scheduler_id, _end_session(connection, row.id, now)) for row in sessions]
            # Ended sessions are kept a day for the record, then forgotten: one row per scheduler start.
            connection.execute(SESSIONS.delete().where(SESSIONS.c.ended_at < now - SESSION_RECORD))
            return ended

    def release_unbegun(self, run_ids: Sequence[str]) -> int:
        """Put RUNNING runs a scheduler never handed to an executor back to due (see `_release`); returns how many."""
        if not run_ids:
            return 0
        query = (
            select(RUNS.c.id)
            .where(RUNS.c.id.in_(run_ids), RUNS.c.status == RunStatus.RUNNING, RUNS.c.held.is_(False))
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            unbegun = connection.execute(query).scalars().all()
            _release(connection, unbegun)
            return len(unbegun)

    def mark_held(self, run_ids: Sequence[str]) -> int:
        """Note that an executor holds these RUNNING runs (begun, result due): they are never released."""
        if not run_ids:
            return 0
        with self._engine.begin() as connection:
            done = connection.execute(
                update(RUNS).where(RUNS.c.id.in_(run_ids), RUNS.c.status == RunStatus.RUNNING).values(held=True)
            )
            return int(getattr(done, "rowcount", 0) or 0)

    # -- lost runs ---------------------------------------------------------------------------------------------------

    def settle_vanished(self, run_ids: Sequence[str], now: datetime) -> list[LostRun]:
        """Settle as LOST the RUNNING runs among `run_ids` that no executor holds: they were sent to an executor that
        vanished, so they may have reached their target and their outcome is unknown."""
        if not run_ids:
            return []
        query = (
            select(RUNS.c.id, RUNS.c.endpoint_id, RUNS.c.tenant_id)
            .where(RUNS.c.id.in_(run_ids), RUNS.c.status == RunStatus.RUNNING, RUNS.c.held.is_(False))
            .order_by(RUNS.c.id)
            .with_for_update(key_share=True)
        )
        with self._engine.begin() as connection:
            return _settle_lost(connection, connection.execute(query).all(), now, VANISHED_MESSAGE)

    def reap_expired(self, now: datetime, limit: int) -> list[LostRun]:
        """Mark up to `limit` RUNNING runs whose lease has expired as LOST and re-plan their endpoints; returns them."""
        query = (
            select(RUNS.c.id, RUNS.c.endpoint_id, RUNS.c.tenant_id)
            .where(RUNS.c.status == RunStatus.RUNNING, RUNS.c.lease_expires_at < now)
            .order_by(RUNS.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        with self._engine.begin() as connection:
            return _settle_lost(connection, connection.execute(query).all(), now, EXPIRED_MESSAGE)


# -- claims ------------------------------------------------------------------------------------------------------


def _within_bytes(rows: Sequence[Any], budget: int) -> Sequence[Any]:
    """The longest prefix of due rows whose requests fit the budget (at least one): a claim must fit one message.

    Rows left out stay unclaimed and due; the next claim takes them.
    """
    used = 0
    for count, row in enumerate(rows):
        used += len(row.url) + len(row.body.encode()) + len(row.secrets or "")
        if used > budget and count > 0:
            return rows[:count]
    return rows


def _claim(row: Any, now: datetime, lease_grace_ms: int) -> Claim:
    """Claim the endpoint of `row`; the lease covers the run's every attempt (`RetryPolicy.budget_ms`)."""
    state = schedule.state_of(row)
    start_at = jitter.claim_start(state, row.id, row.jitter_ms)
    budget_ms = _retry_of(row).budget_ms(row.timeout_ms)
    return transitions.on_claim(state, new_run_id(), now, budget_ms, lease_grace_ms, start_at=start_at)


def _retry_of(row: Any) -> RetryPolicy:
    return retries.policy(row.retry_max_attempts, row.retry_backoff_ms)


def _claimed_before(
    connection: Connection, session_id: str, claim_id: str, keyring: Keyring, now: datetime
) -> list[ClaimedRun]:
    """The running runs an earlier claim `claim_id` of the session took (none when this claim is not a retry)."""
    query = (
        select(
            RUNS.c.id.label("run_id"),
            RUNS.c.scheduled_for.label("run_scheduled_for"),
            RUNS.c.lease_expires_at.label("run_lease_expires_at"),
            ENDPOINTS,
        )
        .join(ENDPOINTS, ENDPOINTS.c.id == RUNS.c.endpoint_id)
        .where(RUNS.c.session_id == session_id, RUNS.c.claim_id == claim_id, RUNS.c.status == RunStatus.RUNNING)
        .order_by(RUNS.c.scheduled_for)
    )
    # A run whose secrets stopped opening since its claim stays out: it is never sent without them, and its lease
    # ends it LOST like any run that was not performed.
    claims = [_claimed_again(row, keyring, now) for row in connection.execute(query)]
    return [claim for claim in claims if claim.sendable]


def _claimed_run(row: Any, claim: Claim, keyring: Keyring, now: datetime) -> ClaimedRun:
    timing = _Timing(claim.scheduled_for, claim.start_at or claim.scheduled_for, claim.lease_expires_at)
    return _sendable(row, claim.run_id, timing, keyring, now)


def _claimed_again(row: Any, keyring: Keyring, now: datetime) -> ClaimedRun:
    """A run of an earlier claim, handed out again to the scheduler that never got the answer. Its start time is
    worked out again from the endpoint, which the claim left as jitter reads it (`jitter.claim_start`)."""
    start_at = jitter.claim_start(schedule.state_of(row), row.id, row.jitter_ms)
    timing = _Timing(row.run_scheduled_for, start_at, row.run_lease_expires_at)
    return _sendable(row, row.run_id, timing, keyring, now)


@dataclass(frozen=True)
class _Timing:
    scheduled_for: datetime
    start_at: datetime
    lease_expires_at: datetime


def _sendable(row: Any, run_id: str, timing: _Timing, keyring: Keyring, now: datetime) -> ClaimedRun:
    """What an executor needs to perform the run; not `sendable` when the endpoint's secrets no longer open."""
    try:
        secrets, sendable = EndpointSecrets.open(keyring, row.id, row.secrets), True
    except SecretsError:
        secrets, sendable = EndpointSecrets(), False
    return ClaimedRun(
        run_id=run_id,
        endpoint_id=row.id,
        tenant_id=row.tenant_id,
        scheduled_for=timing.scheduled_for,
        lease_expires_at=timing.lease_expires_at,
        url=with_password(row.url, secrets.password),
        method=row.method,
        headers=secrets.headers,
        body=row.body,
        timeout_ms=row.timeout_ms,
        sendable=sendable,
        start_at=timing.start_at,
        signing_secrets=signing.signing_secrets(secrets, row.previous_secret_expires_at, now),
        job_id=row.job_id,
        retry=_retry_of(row),
    )


def _run_row(row: Any, claim: Claim, session_id: str | None, claim_id: str | None) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "claim_id": claim_id or None,
        "id": claim.run_id,
        "tenant_id": row.tenant_id,
        "job_id": row.job_id,
        "endpoint_id": row.id,
        "status": RunStatus.RUNNING,
        "source": claim.source,
        "attempt": claim.attempt,
        "scheduled_for": claim.scheduled_for,
        "lease_expires_at": claim.lease_expires_at,
    }


def _leased_row(endpoint_id: str, claim: Claim) -> tuple[str, dict[str, Any]]:
    return endpoint_id, schedule.column_values(claim.state, _CLAIMED_COLUMNS)


def _fail_sealed_shut(connection: Connection, claims: Sequence[ClaimedRun], now: datetime) -> None:
    """Settle runs that cannot be sent as FAILURE now, instead of letting one bad row stop every claim."""
    for claim in claims:
        log.error(
            "endpoint secrets do not open", extra={"event": "secrets.unopenable", "endpoint_id": claim.endpoint_id}
        )
    connection.execute(
        update(RUNS)
        .where(RUNS.c.id.in_([claim.run_id for claim in claims]))
        .values(status=RunStatus.FAILURE, finished_at=now, error_message=SEALED_SHUT_MESSAGE)
    )
    _settle(connection, {c.endpoint_id: Outcome(c.run_id, RunStatus.FAILURE, None) for c in claims}, now)


# -- results -----------------------------------------------------------------------------------------------------


def _outcome_of(result: RunResult) -> Outcome:
    return Outcome(result.run_id, RunStatus(result.status), result.started_at, result.duration_ms)


def _outcome_row(result: RunResult) -> tuple[str, dict[str, Any]]:
    return result.run_id, {name: getattr(result, name) for name in _OUTCOME_COLUMNS}


def _record_attempts(connection: Connection, results: Sequence[RunResult]) -> None:
    """Store the attempts of the retried runs among `results` (few: apart from the batched outcome columns)."""
    retried = [
        by_id_row(result.run_id, {"attempts": [attempt.to_json() for attempt in result.attempts]})
        for result in results
        if result.attempts
    ]
    if retried:
        connection.execute(_ATTEMPTS_UPDATE, retried)


def _found_after_lost_row(run: Any, result: RunResult) -> tuple[str, dict[str, Any]]:
    """The real outcome of a run settled LOST, which replaces the unknown one; the error message says it came late."""
    note = "reported after the run had been settled as LOST"
    if run.error_message:
        note = f"{note} ({run.error_message})"
    message = f"{result.error_message}; {note}" if result.error_message else note
    run_id, values = _outcome_row(result)
    return run_id, {**values, "error_message": message}


def _settle(
    connection: Connection, by_endpoint: Mapping[str, Outcome], now: datetime, ruled: list[str] | None = None
) -> dict[str, Missed]:
    """Settle the runs in flight of these endpoints with their outcomes (`transitions.on_settle`) and write the
    endpoints back; a run that no longer holds its endpoint's lease moves nothing. The ids of settled runs whose
    endpoints have rules are added to `ruled`.

    Returns, by run id, the slots each re-plan found missed (recorded on the endpoint too).
    """
    if not by_endpoint:
        return {}
    query = (
        select(ENDPOINTS, JOBS.c.status.label("job_status"))
        .join(JOBS, JOBS.c.id == ENDPOINTS.c.job_id)
        .where(ENDPOINTS.c.id.in_(by_endpoint))
        .order_by(ENDPOINTS.c.id)
        .with_for_update(of=ENDPOINTS, key_share=True)
    )
    changes = []
    missed: dict[str, Missed] = {}
    for row in connection.execute(query):
        outcome = by_endpoint[row.id]
        settled = _settled(row, outcome, now)
        if settled is None:
            continue  # fenced: another run holds the endpoint now
        if settled.missed is not None:
            missed[outcome.run_id] = settled.missed
        if ruled is not None and row.policies:
            ruled.append(outcome.run_id)
        changes.append((row.id, schedule.column_values(settled.state, _SETTLED_COLUMNS)))
    _SETTLE_UPDATE.execute(connection, changes)
    return missed


def _settled(row: Any, outcome: Outcome, now: datetime) -> Replanned | None:
    """An endpoint row (with its job's status) settled with `outcome`; a refused cron expression is logged."""
    live = row.deleted_at is None and row.job_status == JOB_ACTIVE
    settled = transitions.on_settle(schedule.state_of(row, live=live), outcome, now)
    if settled is not None:
        schedule.log_refused(row.id, settled)
    return settled


# -- lost and released runs ----------------------------------------------------------------------------------------


def _settle_lost(connection: Connection, runs: Sequence[Any], now: datetime, message: str) -> list[LostRun]:
    """Settle RUNNING `runs` (id, endpoint_id, tenant_id) as LOST with `message`, re-planning their endpoints."""
    if not runs:
        return []
    connection.execute(
        update(RUNS)
        .where(RUNS.c.id.in_([run.id for run in runs]))
        .values(status=RunStatus.LOST, finished_at=now, error_message=message)
    )
    missed = _settle(connection, {run.endpoint_id: Outcome.lost(run.id) for run in runs}, now)
    return [
        LostRun(run.id, run.endpoint_id, run.tenant_id, missed[run.id].count if run.id in missed else 0) for run in runs
    ]


def _end_session(connection: Connection, session_id: str, now: datetime) -> int:
    """End a session and release its RUNNING runs no executor holds; returns how many were released.

    Such a run never began: no executor said it holds it, and the scheduler that claimed it is gone (or said it
    stops). It leaves no trace: its row is deleted and its endpoint's lease cleared, so the endpoint is due again at
    the same slot (`next_run_at` never moved) and the next claim runs it, with a new run id.
    """
    connection.execute(update(SESSIONS).where(SESSIONS.c.id == session_id).values(ended_at=now))
    released = (
        connection.execute(
            select(RUNS.c.id)
            .where(RUNS.c.session_id == session_id, RUNS.c.status == RunStatus.RUNNING, RUNS.c.held.is_(False))
            .with_for_update(key_share=True)
        )
        .scalars()
        .all()
    )
    _release(connection, released)
    return len(released)


def _release(connection: Connection, run_ids: Sequence[str]) -> None:
    """Undo the claims of runs that never began (`transitions.on_release`): their rows go, their endpoints' leases
    are cleared, and each endpoint is due again at the same slot."""
    if not run_ids:
        return
    query = (
        select(ENDPOINTS)
        .where(ENDPOINTS.c.lease_run_id.in_(run_ids))
        .order_by(ENDPOINTS.c.id)
        .with_for_update(key_share=True)
    )
    released = [(row.id, transitions.on_release(schedule.state_of(row))) for row in connection.execute(query)]
    _RELEASE_UPDATE.execute(
        connection, [(row_id, schedule.column_values(state, _RELEASED_COLUMNS)) for row_id, state in released]
    )
    connection.execute(RUNS.delete().where(RUNS.c.id.in_(run_ids)))


# -- scheduler sessions ------------------------------------------------------------------------------------------


def _insert_for(connection: Connection) -> Any:
    """An INSERT into the sessions table in the connection's dialect, which both backends extend with ON CONFLICT."""
    insert_of = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    return insert_of(SESSIONS)


def _require_open_session(connection: Connection, session_id: str) -> None:
    query = select(SESSIONS.c.ended_at).where(SESSIONS.c.id == session_id).with_for_update(read=True)
    session = connection.execute(query).one_or_none()
    if session is None:
        raise FailedPrecondition(f"no scheduler session {shown(session_id)}: send a heartbeat to open it first")
    if session.ended_at is not None:
        raise _session_ended(session_id)


def _session_ended(session_id: str) -> FailedPrecondition:
    return FailedPrecondition(f"scheduler session {shown(session_id)} has ended; open a new one")
