"""`pacerctl apply -f FILE [--dry-run]`: make Pacer hold the jobs and endpoints a YAML file describes.

Apply is idempotent by name within the caller's tenant: it reads first (ListJobs over every page, then GetJob and
ListJobEndpoints for each active job the file names), plans with `reconcile.plan`, prints the plan, and then makes the
changes in plan order, a job's endpoints up to IN_FLIGHT at a time (`waves`). A second apply of the same file finds
nothing to do and makes no mutating call. Every mutating call carries the reason `pacerctl apply <file name>` for
the audit trail (CreateJob has no reason field).

`pacerctl diff -f FILE` prints the same plan and changes nothing; like diff(1) it exits 1 when there are changes.

Nothing is ever deleted or archived, and pause state is only set when an endpoint is created (see `reconcile`).
A new endpoint whose rules act on other endpoints is created without them; they are set once every endpoint of the
plan exists, so the order of endpoints in the file never matters.
The file is validated in full before any call; a refused call stops the apply once the calls sent with it are
answered, the changes made stay made, and running apply again picks up from there.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli import reconcile
from pacer_cli.commands import Session, Subcommand, every_job
from pacer_cli.manifest import Manifest, ManifestError, load
from pacer_cli.reconcile import (
    Change,
    Conflict,
    CreateEndpoint,
    CreateJob,
    DeleteEndpoint,
    ObservedJob,
    Plan,
    UpdateEndpoint,
    UpdateJob,
)
from pacer_common.client import ApiError

MAX_REASON = 500
IN_FLIGHT = 16  # the most calls an apply has waiting for an answer at once
CONFLICT_EXIT = 4  # like FAILED_PRECONDITION: Pacer's state, not the file, is in the way
DIFFERS_EXIT = 1  # `pacerctl diff`: the file and Pacer differ, as diff(1) says it


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--file", required=True, metavar="FILE", help="the YAML file to apply (see examples/use-cases/)"
    )
    parser.add_argument(
        "--rotate-secrets",
        action="store_true",
        help="send every signing secret the file names (${VARIABLE}) again; Pacer never returns a secret, so a "
        "changed one is otherwise not seen",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete the endpoints of the file's jobs that the file does not name (other jobs are never touched)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`-f FILE`, `--rotate-secrets`, `--prune` and `--dry-run`."""
    _file_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")


def reason_for(path: str) -> str:
    """The audit reason of every call an apply of `path` makes: `pacerctl apply flash-sale.yaml`."""
    return f"pacerctl apply {Path(path).name}"[:MAX_REASON]


# --- reading what Pacer holds ----------------------------------------------------------------------------------------


def active_jobs(session: Session) -> list[pb.JobSummary]:
    """Every active job of the caller's tenant."""
    return every_job(session, pb.JOB_STATUS_ACTIVE)


def observe(session: Session, manifest: Manifest) -> dict[str, ObservedJob]:
    """The active jobs the file names, by name, with their endpoints.

    Raises Conflict when two active jobs share a name the file uses (archived jobs are never matched).
    """
    ids_by_name: dict[str, list[str]] = {}
    for summary in active_jobs(session):
        ids_by_name.setdefault(summary.name, []).append(summary.job_id)
    observed: dict[str, ObservedJob] = {}
    for job in manifest.jobs:
        ids = ids_by_name.get(job.name, [])
        if len(ids) > 1:
            raise Conflict(
                f"{len(ids)} active jobs are named {job.name!r} ({', '.join(ids)}); "
                "apply matches jobs by name: archive or rename all but one"
            )
        if ids:
            observed[job.name] = _observe_job(session, ids[0])
    return observed


def _observe_job(session: Session, job_id: str) -> ObservedJob:
    job: pb.Job = session.call("GetJob", pb.GetJobRequest(job_id=job_id)).job
    listed: pb.ListJobEndpointsResponse = session.call("ListJobEndpoints", pb.ListJobEndpointsRequest(job_id=job_id))
    return ObservedJob(job_id, job.name, job.description, tuple(listed.endpoints))


# --- making the changes ----------------------------------------------------------------------------------------------


class _Executor:
    """Makes the changes of one plan, remembering the ids of the jobs it created for their endpoints (a job change
    is answered before any change of its endpoints is sent)."""

    def __init__(self, session: Session, reason: str) -> None:
        self._session = session
        self._reason = reason
        self._created_jobs: dict[str, str] = {}
        self.deferred: dict[str, CreateEndpoint] = {}  # endpoint id -> its creation, rules still to set

    def make(self, change: Change) -> str:
        """Make one change; returns the id of the job or endpoint it created or changed."""
        call = self._session.call
        match change:
            case CreateJob(job=job):
                created = call("CreateJob", pb.CreateJobRequest(name=job.name, description=job.description))
                self._created_jobs[job.name] = created.job_id
                return str(created.job_id)
            case UpdateJob(job=job, job_id=job_id):
                call("UpdateJob", pb.UpdateJobRequest(job_id=job_id, description=job.description, reason=self._reason))
                return job_id
            case CreateEndpoint():
                return self._add(change)
            case UpdateEndpoint():
                call("UpdateEndpointConfig", reconcile.update_request(change, self._reason))
                return change.endpoint_id
            case DeleteEndpoint(untracked=gone):
                call("DeleteEndpoint", pb.DeleteEndpointRequest(endpoint_id=gone.endpoint_id, reason=self._reason))
                return gone.endpoint_id

    def _add(self, change: CreateEndpoint) -> str:
        """AddEndpointToJob, then an indefinite pause for `paused: true` (the only time apply sets pause state).
        Rules acting on other endpoints wait in `deferred` until the whole plan is made."""
        job_id = change.job_id or self._created_jobs[change.job.name]
        defer = reconcile.names_others(change.endpoint)
        request = reconcile.add_request(job_id, change.endpoint, self._reason, with_policies=not defer)
        endpoint_id = str(self._session.call("AddEndpointToJob", request).endpoint_id)
        if defer:
            self.deferred[endpoint_id] = change
        if change.endpoint.paused:
            pause = pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason=self._reason)
            self._session.call("PauseOrResumeEndpoint", pause)
        return endpoint_id


def execute(session: Session, plan: Plan, reason: str) -> list[str]:
    """Make every change of `plan`, a wave of calls at a time (`waves`); returns the id each change created or changed,
    in plan order.

    A refused call stops the apply once its wave is answered: no later wave is sent. It propagates as ApiError after
    a note on stderr saying which change it was (the first refused one in plan order) and how many were made.
    """
    executor = _Executor(session, reason)
    made: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="apply") as pool:
        for wave in waves(plan.changes):
            refused = _send(pool, executor, wave, made)
            if refused is not None:
                _report(session, plan, refused, made)
                raise refused[1]
    for endpoint_id, change in executor.deferred.items():
        try:
            session.call("UpdateEndpointConfig", reconcile.policies_request(endpoint_id, change.endpoint, reason))
        except ApiError:
            session.stderr.write(
                f"pacerctl apply: the rules of `{reconcile.change_line(change)}` ({change.endpoint.path}) were "
                "refused; every change of the plan was made. Fix the rules and apply again.\n"
            )
            raise
    return [made[index] for index in range(len(plan.changes))]


def waves(changes: Sequence[Change]) -> Iterator[list[tuple[int, Change]]]:
    """The changes as waves of calls sent together, in plan order, each (index in the plan, change).

    A job change goes alone: the endpoints after it need the job. A job's endpoint changes go 1, 2, 4 and 8 at a
    time, then IN_FLIGHT at a time: a mistake the server refuses for every endpoint of a job (an interval under the
    tenant's floor) then costs one call, and a refusal early in a job leaves little made after it.
    """
    wave: list[tuple[int, Change]] = []
    size = 1
    for index, change in enumerate(changes):
        if isinstance(change, (CreateJob, UpdateJob)):
            if wave:
                yield wave
            yield [(index, change)]
            wave, size = [], 1
            continue
        if wave and _job_name(wave[-1][1]) != _job_name(change):
            yield wave
            wave, size = [], 1
        wave.append((index, change))
        if len(wave) == size:
            yield wave
            wave, size = [], min(size * 2, IN_FLIGHT)
    if wave:
        yield wave


def _job_name(change: Change) -> str:
    return change.job.name


def _send(
    pool: ThreadPoolExecutor, executor: _Executor, wave: list[tuple[int, Change]], made: dict[int, str]
) -> tuple[int, ApiError] | None:
    """Make the wave's changes together and wait for every answer; the first refused one in plan order, if any."""
    if len(wave) == 1:  # a change sent alone needs no thread
        outcomes = {wave[0][0]: _attempt(executor, wave[0][1])}
    else:
        futures = {index: pool.submit(_attempt, executor, change) for index, change in wave}
        outcomes = {index: future.result() for index, future in futures.items()}
    refused: tuple[int, ApiError] | None = None
    for index, outcome in outcomes.items():
        if isinstance(outcome, ApiError):
            refused = refused or (index, outcome)
        else:
            made[index] = outcome
    return refused


def _attempt(executor: _Executor, change: Change) -> str | ApiError:
    try:
        return executor.make(change)
    except ApiError as error:
        return error


def _report(session: Session, plan: Plan, refused: tuple[int, ApiError], made: dict[int, str]) -> None:
    index, change = refused[0], plan.changes[refused[0]]
    before = sum(1 for done in made if done < index)
    after = len(made) - before
    sent_with = f" (and {after} after it, sent together with it)" if after else ""
    session.stderr.write(
        f"pacerctl apply: stopped at `{reconcile.change_line(change)}` ({_path(change)}); "
        f"{before} of {len(plan.changes)} changes were made before it{sent_with}. "
        "Fix the cause and apply again: it carries on from here.\n"
    )


def _path(change: Change) -> str:
    match change:
        case CreateJob(job=job) | UpdateJob(job=job):
            return job.path
        case CreateEndpoint(endpoint=endpoint) | UpdateEndpoint(endpoint=endpoint):
            return endpoint.path
        case DeleteEndpoint(job=job):
            return job.path


# --- the command -----------------------------------------------------------------------------------------------------


def invalid_text(error: ManifestError) -> str:
    """The stderr text for a file that cannot be applied: the file, then one line per problem with its path."""
    lines = [f"pacerctl apply: error: {error.source} is not valid; nothing was changed"]
    lines += [f"  {problem}" for problem in error.problems]
    return "".join(line + "\n" for line in lines)


def apply(session: Session, args: argparse.Namespace) -> int:
    """Validate the file, plan against what Pacer holds, print the plan, and (unless --dry-run) make the changes.

    Exit 0 on success; 2 for a file that cannot be applied; 4 when Pacer holds two objects with a name the file uses;
    an API error's own exit code when a call is refused.
    """
    plan = _plan(session, args)
    if isinstance(plan, int):
        return plan
    if session.json:
        return _apply_json(session, plan, args)
    session.emit("".join(line + "\n" for line in reconcile.plan_lines(plan)))
    if not args.dry_run:
        execute(session, plan, reason_for(args.file))
    session.emit(reconcile.outcome_line(plan, dry_run=args.dry_run) + "\n")
    return 0


def _plan(session: Session, args: argparse.Namespace) -> Plan | int:
    """The plan for `args.file`, or the exit code when there is none (the reason written on stderr)."""
    try:
        manifest = load(args.file, session.environ)
    except ManifestError as error:
        session.stderr.write(invalid_text(error))
        return 2
    try:
        return reconcile.plan(
            manifest, observe(session, manifest), rotate_secrets=args.rotate_secrets, prune=args.prune
        )
    except Conflict as error:
        session.stderr.write(f"pacerctl apply: error: {error}; nothing was changed\n")
        return CONFLICT_EXIT


def diff(session: Session, args: argparse.Namespace) -> int:
    """Print what `apply -f FILE` would change, change nothing; exit 0 when nothing differs, 1 when something does
    (the exit codes of `apply` for a file or a Pacer it cannot plan against)."""
    plan = _plan(session, args)
    if isinstance(plan, int):
        return plan
    if session.json:
        session.emit(reconcile.plan_json(plan) + "\n")
    else:
        session.emit("".join(line + "\n" for line in reconcile.plan_lines(plan)) or "no changes\n")
    return DIFFERS_EXIT if plan.changes else 0


def _apply_json(session: Session, plan: Plan, args: argparse.Namespace) -> int:
    """--json: the changes as a JSON list on stdout (with ids once made); untracked endpoints are noted on stderr."""
    for item in plan.untracked:
        session.stderr.write(reconcile.untracked_line(item) + "\n")
    ids: list[str] = [] if args.dry_run else execute(session, plan, reason_for(args.file))
    session.emit(reconcile.plan_json(plan, ids) + "\n")
    return 0


def subcommand() -> Subcommand:
    """`pacerctl apply` (a top-level command: its group is its name)."""
    return Subcommand(
        "apply",
        "",
        "create or update jobs and endpoints from a YAML file; idempotent, deletes only with --prune",
        "pacerctl apply -f examples/use-cases/flash-sale.yaml --dry-run",
        add_arguments,
        apply,
    )


def diff_subcommand() -> Subcommand:
    """`pacerctl diff` (a top-level command: its group is its name)."""
    return Subcommand(
        "diff",
        "",
        "show what `apply -f FILE` would change (fields, jitter, signing, policies); exit 1 when anything differs",
        "pacerctl diff -f examples/use-cases/flash-sale.yaml",
        _file_arguments,
        diff,
    )
