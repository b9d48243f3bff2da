"""The subcommands: each turns its arguments into one protobuf request, calls one RPC and renders the response.

Every public action of `pacer.control.v1.ControlService` is one subcommand, grouped by the noun it acts on (jobs,
endpoints, runs). The parsers for the values people type (durations, times, headers) live here too, so argparse
rejects a malformed value before anything is sent.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO, TypeVar

from google.protobuf.message import Message

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli import render
from pacer_common import limits
from pacer_common.client import ApiError
from pacer_common.ids import looks_like
from pacer_common.limits import Limit

R = TypeVar("R", bound=Message)
Build = Callable[[argparse.Namespace, datetime], Message]

_UNITS_MS = MappingProxyType({"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000})
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_HELP = "a duration such as 500ms, 20s, 5m, 2h, 1d or 1h30m"

# Request field (as the server names it in a BadRequest) -> the option a user types. The first entry that matches
# wins, so nested paths come before their parents.
_FLAGS = (
    ("baseline.cron.expression", "--cron"),
    ("baseline.cron.timezone", "--timezone"),
    ("baseline.interval_ms", "--every"),
    ("baseline", "--every/--cron"),
    ("clamp.min_interval_ms", "--min-interval"),
    ("clamp.max_interval_ms", "--max-interval"),
    ("clamp", "--min-interval/--max-interval"),
    ("timeout_ms", "--timeout"),
    ("retry.max_attempts", "--attempts"),
    ("retry.backoff_ms", "--retry-backoff"),
    ("interval_ms", "--every"),
    ("ttl_minutes", "--ttl"),
    ("run_at", "--at/--in"),
    ("pause_until", "--until/--for"),
    ("window_hours", "--window-hours"),
    ("page_size", "--page-size"),
    ("page_token", "--page-token"),
    ("headers", "--header"),
    ("description", "--description"),
    ("reason", "--reason"),
    ("method", "--method"),
    ("limit", "--limit"),
    ("offset", "--offset"),
    ("body", "--body"),
    ("name", "--name"),
    ("url", "--url"),
)


class UsageError(Exception):
    """Arguments that parse one by one but do not make a request together (exit code 2)."""


@dataclass(frozen=True)
class Session:
    """What a subcommand runs with: the API (`call(rpc, request)`), the clock, the output streams, the output mode."""

    call: Callable[[str, Message], Any]
    now: Callable[[], datetime]
    stdout: TextIO
    stderr: TextIO
    # `-o`: table (the default), wide (tables with more columns), json or yaml.
    output: str = "table"
    environ: Mapping[str, str] = field(default_factory=dict)  # where an apply file's `${VARIABLE}` secrets come from

    @property
    def json(self) -> bool:
        return self.output == "json"

    def show(self, response: Message, view: Callable[[], str]) -> None:
        """Print `response` in the output mode: `view()` for people, or the API's JSON or YAML mapping."""
        if self.output == "json":
            self.emit(render.to_json(response) + "\n")
        elif self.output == "yaml":
            self.emit(render.to_yaml(response))
        else:
            self.emit(view())

    def emit(self, text: str) -> None:
        """Write to stdout and flush at once, so a pipe or a watching test sees each line when it happens."""
        self.stdout.write(text)
        self.stdout.flush()


@dataclass(frozen=True)
class Subcommand:
    """One `pacerctl GROUP NAME` command: its arguments and the action that runs it (returns the exit code)."""

    group: str
    name: str
    help: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    action: Callable[[Session, argparse.Namespace], int]


def flag_for(field: str) -> str | None:
    """The command-line option behind a request field path, e.g. `baseline.interval_ms` -> `--every`."""
    for prefix, flag in _FLAGS:
        if field == prefix or field.startswith(prefix + ".") or field.startswith(prefix + "["):
            return flag
    return None


def duration_text(ms: int) -> str:
    """`ms` as a person would write it: 100ms, 20s, 5m, 366d."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def range_help(limit: Limit, unit: str = "") -> str:
    """`1 to 500 (default 50)`: a numeric API limit as help text."""
    return f"{limit.minimum} to {limit.maximum}{unit} (default {limit.default})"


_NAME_HELP = f"display name, {limits.NAME.min_length} to {limits.NAME.max_length} characters"
_TIMEOUT_HELP = (
    f"HTTP timeout, {duration_text(limits.TIMEOUT_MS.minimum or 0)} to {duration_text(limits.TIMEOUT_MS.maximum or 0)}"
    f" (default {duration_text(limits.TIMEOUT_MS.default or 0)})"
)


# --- values people type ----------------------------------------------------------------------------------------------


def parse_duration_ms(text: str) -> int:
    """`500ms`, `20s`, `5m`, `2h`, `1d`, `1h30m`, `1.5s` -> milliseconds; a bare `0` is zero (no bound).

    Raises ArgumentTypeError for anything else: a bare number is refused because its unit would be a guess.
    """
    value = text.strip().lower()
    if value == "0":
        return 0
    if not _DURATION.fullmatch(value):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use {DURATION_HELP}")
    total = sum(float(number) * _UNITS_MS[unit] for number, unit in _DURATION_PART.findall(value))
    return round(total)


def parse_ttl_minutes(text: str) -> int:
    """A TTL: a whole number of minutes (`30`) or a duration of whole minutes (`30m`, `2h`, `1d`)."""
    if text.strip().isdigit():
        return int(text)
    try:
        millis = parse_duration_ms(text)
    except argparse.ArgumentTypeError:
        millis = -1
    if millis < 0 or millis % 60_000:
        raise argparse.ArgumentTypeError(f"invalid ttl {text!r}: whole minutes, e.g. 30, 90m or 2h")
    return millis // 60_000


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-01-05T10:00:00Z`, `2026-01-05 10:00+02:00`); without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-01-05T10:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_header(text: str) -> tuple[str, str]:
    """`Name=value` or `Name: value` -> (name, value); header names contain neither `=` nor `:`."""
    match = re.match(r"\s*([^=:\s]+)\s*[=:]\s?(.*)\Z", text, re.DOTALL)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid header {text!r}: use Name=value, e.g. Authorization='Bearer x'")
    return match.group(1), match.group(2)


def read_body(path: str) -> str:
    """The text of a body file, or of standard input for `-`."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror}") from None


def _at_or_after(now: datetime, at: datetime | None, after_ms: int | None) -> datetime | None:
    """`--at` as given, or `--in`/`--for` counted from now; None when neither was given."""
    if at is not None:
        return at
    return None if after_ms is None else now + timedelta(milliseconds=after_ms)


# --- building blocks -------------------------------------------------------------------------------------------------


def unary(
    group: str,
    name: str,
    help_text: str,
    example: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    execute: Callable[[Session, argparse.Namespace], R],
    view: Callable[[R, argparse.Namespace], str],
) -> Subcommand:
    """A subcommand that makes one request and prints the response: `view` for people, JSON or YAML with `-o`."""

    def action(session: Session, args: argparse.Namespace) -> int:
        response = execute(session, args)
        session.show(response, lambda: view(response, args))
        return 0

    return Subcommand(group, name, help_text, example, add_arguments, action)


def call(rpc: str, build: Build) -> Callable[[Session, argparse.Namespace], Any]:
    """Execute by sending `build(args, now)` to `rpc`; a job given by name is looked up first."""

    def execute(session: Session, args: argparse.Namespace) -> Any:
        request = build(args, session.now())  # the arguments' own errors come first, before any call
        if resolve_names(session, args):
            request = build(args, session.now())
        return session.call(rpc, request)

    return execute


def resolve_names(session: Session, args: argparse.Namespace) -> bool:
    """Replace the endpoint and the job given by name (`args.endpoint`, `args.job`) with their ids, in place.

    The endpoint comes first: a `--job` that only says whose endpoint a name is then becomes that endpoint's job.
    True when a name was replaced.
    """
    endpoint = resolve_endpoint(session, args)
    job = resolve_job(session, args)
    return endpoint or job


def resolve_job(session: Session, args: argparse.Namespace) -> bool:
    """Replace a job named by its name (`jobs get "Production Health Monitor"`) with its id, in place.

    An argument shaped like a job id is used as is. A name must match exactly one of the tenant's jobs: none is
    NOT_FOUND, several is a usage error listing their ids. True when it replaced a name.
    """
    name = getattr(args, "job", None)
    if not name or looks_like("job", name):
        return False
    found = [job.job_id for job in every_job(session) if job.name == name]
    if not found:
        raise ApiError("NOT_FOUND", f"no job named {name!r}")
    if len(found) > 1:
        raise UsageError(f"{len(found)} jobs are named {name!r}: {', '.join(found)}; give the id")
    args.job = found[0]
    return True


def resolve_endpoint(session: Session, args: argparse.Namespace) -> bool:
    """Replace an endpoint given by name (`endpoints hint "Production Health Monitor/errors"`) with its id, in place.

    An argument shaped like an endpoint id is used as is. A name is `JOB/NAME`, or NAME with `--job JOB` (the job by
    id or name either way), and must match exactly one endpoint (see `find_endpoint`). When `--job` was given it
    becomes the id of the endpoint's job. True when it replaced a name.
    """
    reference = getattr(args, "endpoint", None)
    if not reference or looks_like("ep", reference):
        return False
    job_id, endpoint = find_endpoint(session, reference, getattr(args, "job", None))
    args.endpoint = endpoint.endpoint_id
    if getattr(args, "job", None):
        args.job = job_id
    return True


def find_endpoint(session: Session, reference: str, job: str | None) -> tuple[str, pb.EndpointSummary]:
    """The one endpoint `reference` names, with its job's id: its id or name within `job` (an id or a name), or
    without `job`, `JOB/NAME`.

    Job and endpoint names may hold a slash, so `JOB/NAME` is tried at every slash (`--job` takes a name whole).
    None matching is NOT_FOUND, naming what was missing; several (two jobs of that name both have the endpoint)
    is a usage error listing their ids. A name without a job is a usage error that shows both forms.
    """
    places = [(job, reference)] if job else _job_and_name(reference)
    if not places:
        raise UsageError(f"{reference!r} is not an endpoint id: give JOB/{reference} or --job JOB {reference}")
    directory = _Directory(session)
    found: dict[str, tuple[str, pb.EndpointSummary]] = {}
    misses = []
    for job_ref, name in places:
        matches = directory.endpoints_named(job_ref, name)
        found.update((endpoint.endpoint_id, (job_id, endpoint)) for job_id, endpoint in matches)
        if not matches:
            misses.append(directory.miss(job_ref, name))
    if not found:
        raise ApiError("NOT_FOUND", "; ".join(misses))
    if len(found) > 1:
        ids = ", ".join(f"{endpoint_id} (job {job_id})" for endpoint_id, (job_id, _) in sorted(found.items()))
        raise UsageError(f"{len(found)} endpoints match {reference!r}: {ids}; give the endpoint id")
    return next(iter(found.values()))


def _job_and_name(reference: str) -> list[tuple[str, str]]:
    """`a/b/c` -> [("a", "b/c"), ("a/b", "c")]: every way to read it as JOB/NAME, both parts non-empty."""
    return [
        (reference[:at], reference[at + 1 :])
        for at, char in enumerate(reference)
        if char == "/" and 0 < at < len(reference) - 1
    ]


class _Directory:
    """The tenant's jobs and their endpoints as one command looks them up: each list is fetched once, when needed."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._jobs: list[pb.JobSummary] | None = None
        self._endpoints: dict[str, list[pb.EndpointSummary]] = {}

    def job_ids(self, job: str) -> list[str]:
        """The ids of the jobs `job` names: itself when it is shaped like an id, else the jobs of that name."""
        if looks_like("job", job):
            return [job]
        if self._jobs is None:
            self._jobs = every_job(self._session)
        return [summary.job_id for summary in self._jobs if summary.name == job]

    def endpoints(self, job_id: str) -> list[pb.EndpointSummary]:
        if job_id not in self._endpoints:
            listing = self._session.call("ListJobEndpoints", pb.ListJobEndpointsRequest(job_id=job_id))
            self._endpoints[job_id] = list(listing.endpoints)
        return self._endpoints[job_id]

    def endpoints_named(self, job: str, name: str) -> list[tuple[str, pb.EndpointSummary]]:
        """(job id, endpoint) of every endpoint whose id or name is `name` in a job that `job` names."""
        return [
            (job_id, endpoint)
            for job_id in self.job_ids(job)
            for endpoint in self.endpoints(job_id)
            if name in (endpoint.endpoint_id, endpoint.name)
        ]

    def miss(self, job: str, name: str) -> str:
        """Why `job`/`name` matched nothing: no such job, or no such endpoint in it."""
        if not self.job_ids(job):
            return f"no job named {job!r}"
        return f"job {job!r} has no endpoint named {name!r}"


def every_job(session: Session, status: pb.JobStatus.ValueType = pb.JOB_STATUS_UNSPECIFIED) -> list[pb.JobSummary]:
    """Every job of the caller's tenant in `status` (unspecified: all), following the page tokens."""
    request = pb.ListJobsRequest(status=status, page_size=limits.PAGE_SIZE.maximum or 0)
    jobs: list[pb.JobSummary] = []
    while True:
        page: pb.ListJobsResponse = session.call("ListJobs", request)
        jobs.extend(page.jobs)
        if not page.next_page_token:
            return jobs
        request.page_token = page.next_page_token


def _details(response: Message, _args: argparse.Namespace) -> str:
    return render.details(response)


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", default="", help=f"why, for the audit trail (at most {limits.REASON.max_length} characters)"
    )


ENDPOINT_HELP = "endpoint id, JOB/NAME (the job by id or name), or a name with --job"


def _endpoint_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help=ENDPOINT_HELP)
    parser.add_argument("--job", metavar="JOB", help="the job (id or name) of the endpoint ENDPOINT names")


def _endpoint_with_reason(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    _reason(parser)


# --- jobs ------------------------------------------------------------------------------------------------------------


def _job_create_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help=_NAME_HELP)
    parser.add_argument(
        "--description", default="", help=f"free text, at most {limits.DESCRIPTION.max_length} characters"
    )


def _job_create(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.CreateJobRequest(name=args.name, description=args.description)


def _job_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="job id or name")


def _job_get(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.GetJobRequest(job_id=args.job)


def _job_list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=("active", "archived"), help="only jobs in this state (default: all)")
    parser.add_argument("--page-size", type=int, default=0, help=f"jobs per page, {range_help(limits.PAGE_SIZE)}")
    parser.add_argument("--page-token", default="", help="the token printed after the previous page")
    parser.add_argument("--all", action="store_true", help="follow the page tokens and list every job")


def _job_list(session: Session, args: argparse.Namespace) -> pb.ListJobsResponse:
    """One page, or with --all every page from --page-token on, merged into one response."""
    statuses = {None: pb.JOB_STATUS_UNSPECIFIED, "active": pb.JOB_STATUS_ACTIVE, "archived": pb.JOB_STATUS_ARCHIVED}
    request = pb.ListJobsRequest(status=statuses[args.status], page_size=args.page_size, page_token=args.page_token)
    merged = pb.ListJobsResponse()
    while True:
        page: pb.ListJobsResponse = session.call("ListJobs", request)
        if not args.all:
            return page
        merged.jobs.extend(page.jobs)
        if not page.next_page_token:
            return merged
        request.page_token = page.next_page_token


def _jobs_view(response: pb.ListJobsResponse, _args: argparse.Namespace) -> str:
    return render.jobs_table(response)


def _job_update_args(parser: argparse.ArgumentParser) -> None:
    _job_only(parser)
    parser.add_argument("--name", help="new display name")
    parser.add_argument("--description", help="new description")
    _reason(parser)


def _job_update(args: argparse.Namespace, _now: datetime) -> Message:
    if args.name is None and args.description is None:
        raise UsageError("nothing to change: give --name and/or --description")
    request = pb.UpdateJobRequest(job_id=args.job, reason=args.reason)
    if args.name is not None:
        request.name = args.name
    if args.description is not None:
        request.description = args.description
    return request


def _job_archive_args(parser: argparse.ArgumentParser) -> None:
    _job_only(parser)
    _reason(parser)


def _job_archive(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.ArchiveJobRequest(job_id=args.job, reason=args.reason)


# --- endpoints: configuration ----------------------------------------------------------------------------------------


def _endpoint_config_args(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    """The options `endpoints add` and `endpoints update` share; `add` requires a name, a URL and a baseline."""
    _http_args(parser, adding=adding)
    _schedule_args(parser, adding=adding)
    _reason(parser)


def _http_args(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    """What the endpoint calls: name, URL, method, headers, body and timeout."""
    parser.add_argument("--name", required=adding, help=_NAME_HELP)
    parser.add_argument("--url", required=adding, help="absolute http or https URL to call")
    parser.add_argument("--method", type=str.upper, help="GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS")
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=parse_header,
        metavar="NAME=VALUE",
        help="request header; repeat for more" + ("" if adding else " (replaces all headers)"),
    )
    if not adding:
        parser.add_argument("--no-headers", action="store_true", help="remove every request header")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body")
    body.add_argument(
        "--body-file", dest="body", type=read_body, metavar="PATH", help="request body from a file (- reads stdin)"
    )
    parser.add_argument("--timeout", type=parse_duration_ms, metavar="DURATION", help=_TIMEOUT_HELP)
    parser.add_argument(
        "--attempts",
        type=int,
        metavar="N",
        help="HTTP attempts per run, 1 to 5: a timeout, a refused connection or a 502/503/504 is tried again within "
        "the run (1: no retry)" + ("" if adding else "; replaces the retry policy"),
    )
    parser.add_argument(
        "--retry-backoff",
        type=parse_duration_ms,
        metavar="DURATION",
        help="wait before the second attempt, doubling before each later one, 100ms to 1m (default 1s)",
    )


def _retry(args: argparse.Namespace) -> pb.RetryPolicy | None:
    """The retry policy the options give; None when neither was given. --retry-backoff needs --attempts, since an
    update replaces the whole policy."""
    if args.attempts is None and args.retry_backoff is None:
        return None
    if args.attempts is None:
        raise UsageError("--retry-backoff needs --attempts (the retry policy is set as a whole)")
    return pb.RetryPolicy(max_attempts=args.attempts, backoff_ms=args.retry_backoff or 0)


def _schedule_args(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    """When the endpoint runs: the baseline (--every or --cron) and the clamp."""
    baseline = parser.add_mutually_exclusive_group(required=adding)
    baseline.add_argument(
        "--every", type=parse_duration_ms, metavar="DURATION", help="interval baseline: " + DURATION_HELP
    )
    baseline.add_argument("--cron", metavar="EXPR", help='cron baseline, 5 or 6 fields, e.g. "*/15 * * * *"')
    parser.add_argument("--timezone", metavar="TZ", help="IANA time zone of --cron, e.g. Europe/Berlin (default UTC)")
    clamp_note = "" if adding else " (replaces the clamp: a bound left out is removed)"
    parser.add_argument(
        "--min-interval", type=parse_duration_ms, metavar="DURATION", help="cooldown between run starts" + clamp_note
    )
    parser.add_argument(
        "--max-interval", type=parse_duration_ms, metavar="DURATION", help="longest gap between runs" + clamp_note
    )


def _baseline(args: argparse.Namespace) -> pb.Baseline | None:
    if args.timezone is not None and args.cron is None:
        raise UsageError("--timezone applies to --cron only")
    if args.cron is not None:
        return pb.Baseline(cron=pb.CronSchedule(expression=args.cron, timezone=args.timezone or ""))
    return None if args.every is None else pb.Baseline(interval_ms=args.every)


def _clamp(args: argparse.Namespace) -> pb.Clamp | None:
    if args.min_interval is None and args.max_interval is None:
        return None
    return pb.Clamp(min_interval_ms=args.min_interval or 0, max_interval_ms=args.max_interval or 0)


def _endpoint_add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="id or name of the job to add the endpoint to")
    _endpoint_config_args(parser, adding=True)


def _endpoint_add(args: argparse.Namespace, _now: datetime) -> Message:
    request = pb.AddEndpointToJobRequest(
        job_id=args.job,
        name=args.name,
        url=args.url,
        method=args.method or "",
        headers=dict(args.headers or ()),
        body=args.body or "",
        timeout_ms=args.timeout or 0,
        reason=args.reason,
    )
    baseline, clamp, retry = _baseline(args), _clamp(args), _retry(args)
    if baseline is not None:
        request.baseline.CopyFrom(baseline)
    if clamp is not None:
        request.clamp.CopyFrom(clamp)
    if retry is not None:
        request.retry.CopyFrom(retry)
    return request


def _endpoint_update_args(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    _endpoint_config_args(parser, adding=False)


def _endpoint_update(args: argparse.Namespace, _now: datetime) -> Message:
    """Only the options given are sent; the server keeps every field left unset."""
    request = pb.UpdateEndpointConfigRequest(endpoint_id=args.endpoint, reason=args.reason)
    for option in ("name", "url", "method", "body"):
        if getattr(args, option) is not None:
            setattr(request, option, getattr(args, option))
    if args.timeout is not None:
        request.timeout_ms = args.timeout
    if args.no_headers and args.headers:
        raise UsageError("--no-headers and --header contradict each other")
    if args.no_headers or args.headers:
        request.headers.SetInParent()
        request.headers.entries.update(dict(args.headers or ()))
    baseline, clamp, retry = _baseline(args), _clamp(args), _retry(args)
    if baseline is not None:
        request.baseline.CopyFrom(baseline)
    if clamp is not None:
        request.clamp.CopyFrom(clamp)
    if retry is not None:
        request.retry.CopyFrom(retry)
    if {field.name for field, _ in request.ListFields()} <= {"endpoint_id", "reason"}:
        raise UsageError("nothing to change: give at least one option (see --help)")
    return request


def _endpoint_delete(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.DeleteEndpointRequest(endpoint_id=args.endpoint, reason=args.reason)


def _endpoint_list(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.ListJobEndpointsRequest(job_id=args.job)


def _endpoints_view(response: pb.ListJobEndpointsResponse, args: argparse.Namespace) -> str:
    return render.endpoints_table(response, wide=_wide(args))


def _wide(args: argparse.Namespace) -> bool:
    return getattr(args, "output", None) == "wide"


# --- endpoints: steering ---------------------------------------------------------------------------------------------


def _ttl(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--ttl",
        type=parse_ttl_minutes,
        metavar="MINUTES|DURATION",
        help=f"{what}, {range_help(limits.TTL_MINUTES, ' minutes')}",
    )


def _hint_args(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    parser.add_argument(
        "--every", type=parse_duration_ms, required=True, metavar="DURATION", help="the temporary cadence"
    )
    _ttl(parser, "how long the hint applies")
    _reason(parser)


def _hint(args: argparse.Namespace, _now: datetime) -> Message:
    request = pb.ApplyIntervalHintRequest(endpoint_id=args.endpoint, interval_ms=args.every, reason=args.reason)
    if args.ttl is not None:
        request.ttl_minutes = args.ttl
    return request


def _once_args(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", type=parse_time, metavar="ISO8601", help="when to run (default: now)")
    when.add_argument("--in", dest="after", type=parse_duration_ms, metavar="DURATION", help="run this long from now")
    _ttl(parser, "how long after its time the run may still fire")
    _reason(parser)


def _once(args: argparse.Namespace, now: datetime) -> Message:
    request = pb.ScheduleOneShotRunRequest(endpoint_id=args.endpoint, reason=args.reason)
    request.run_at.FromDatetime(_at_or_after(now, args.at, args.after) or now)
    if args.ttl is not None:
        request.ttl_minutes = args.ttl
    return request


def _pause_args(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--until", type=parse_time, metavar="ISO8601", help="pause until this time")
    until.add_argument("--for", dest="span", type=parse_duration_ms, metavar="DURATION", help="pause this long")
    _reason(parser)


def _pause(args: argparse.Namespace, now: datetime) -> Message:
    """Without --until or --for the pause is indefinite: only one-shots fire until `endpoints resume`."""
    request = pb.PauseOrResumeEndpointRequest(endpoint_id=args.endpoint, reason=args.reason)
    until = _at_or_after(now, args.until, args.span)
    if until is not None:
        request.pause_until.FromDatetime(until)
    return request


def _resume(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.PauseOrResumeEndpointRequest(endpoint_id=args.endpoint, resume=True, reason=args.reason)


def _clear_hints(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.ClearAdaptiveHintsRequest(endpoint_id=args.endpoint, reason=args.reason)


def _reset_failures(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.ResetFailureCountRequest(endpoint_id=args.endpoint, reason=args.reason)


def _health_args(parser: argparse.ArgumentParser) -> None:
    _endpoint_only(parser)
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--window", type=parse_window_hours, metavar="DURATION", help="how much history, in whole hours: 6h, 7d"
    )
    window.add_argument(
        "--window-hours", type=int, default=0, help=f"hours of history, {range_help(limits.WINDOW_HOURS)}"
    )


def parse_window_hours(text: str) -> int:
    """A duration of whole hours (`6h`, `2d`) as hours."""
    millis = parse_duration_ms(text)
    if millis % 3_600_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of hours (e.g. 6h, 7d)")
    return millis // 3_600_000


def _health(args: argparse.Namespace, _now: datetime) -> Message:
    hours = args.window if args.window is not None else args.window_hours
    return pb.SummarizeEndpointHealthRequest(endpoint_id=args.endpoint, window_hours=hours)


# --- runs ------------------------------------------------------------------------------------------------------------


def _runs_list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", metavar="JOB", help="only runs of this job (id or name)")
    parser.add_argument("--endpoint", metavar="ENDPOINT", help="only runs of this endpoint: " + ENDPOINT_HELP)
    parser.add_argument(
        "--status", choices=("success", "failure", "running"), help="failure covers FAILURE, TIMEOUT, LOST, BLOCKED"
    )
    parser.add_argument("--limit", type=int, default=0, help=f"runs to show, {range_help(limits.RUN_LIMIT)}")
    parser.add_argument("--offset", type=int, default=0, help="matching runs to skip, newest first")


def runs_request(args: argparse.Namespace) -> pb.ListRunsRequest:
    """The ListRuns filter of `runs list` and `runs watch` (--job, --endpoint, and --status when present)."""
    statuses = {
        None: pb.RUN_STATUS_FILTER_UNSPECIFIED,
        "success": pb.RUN_STATUS_FILTER_SUCCESS,
        "failure": pb.RUN_STATUS_FILTER_FAILURE,
        "running": pb.RUN_STATUS_FILTER_RUNNING,
    }
    request = pb.ListRunsRequest(status=statuses[getattr(args, "status", None)])
    if args.job is not None:
        request.job_id = args.job
    if args.endpoint is not None:
        request.endpoint_id = args.endpoint
    return request


def _runs_list(args: argparse.Namespace, _now: datetime) -> Message:
    request = runs_request(args)
    request.limit, request.offset = args.limit, args.offset
    return request


def _runs_view(response: pb.ListRunsResponse, args: argparse.Namespace) -> str:
    return render.runs_table(response, args.offset)


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id")


def _run_get(args: argparse.Namespace, _now: datetime) -> Message:
    return pb.GetRunDetailsRequest(run_id=args.run)


def _job_commands() -> tuple[Subcommand, ...]:
    """jobs: CreateJob, GetJob, ListJobs, UpdateJob, ArchiveJob."""
    return (
        unary(
            "jobs",
            "create",
            "create a job (CreateJob)",
            'pacerctl jobs create "Production Health Monitor"',
            _job_create_args,
            call("CreateJob", _job_create),
            _details,
        ),
        unary(
            "jobs", "get", "show a job (GetJob)", "pacerctl jobs get JOB", _job_only, call("GetJob", _job_get), _details
        ),
        unary(
            "jobs",
            "list",
            "list jobs, newest first (ListJobs)",
            "pacerctl jobs list --status active --all",
            _job_list_args,
            _job_list,
            _jobs_view,
        ),
        unary(
            "jobs",
            "update",
            "rename a job or change its description (UpdateJob)",
            'pacerctl jobs update JOB --description "prod, EU region" --reason "scope"',
            _job_update_args,
            call("UpdateJob", _job_update),
            _details,
        ),
        unary(
            "jobs",
            "archive",
            "archive a job: nothing fires, history stays (ArchiveJob)",
            'pacerctl jobs archive JOB --reason "replaced"',
            _job_archive_args,
            call("ArchiveJob", _job_archive),
            _details,
        ),
    )


def _endpoint_commands() -> tuple[Subcommand, ...]:
    """endpoints: AddEndpointToJob, UpdateEndpointConfig, DeleteEndpoint, ListJobEndpoints."""
    return (
        unary(
            "endpoints",
            "add",
            "add an HTTP endpoint with a baseline to a job (AddEndpointToJob)",
            "pacerctl endpoints add JOB --name check_error_rate --url https://api.example.com/errors --every 1m",
            _endpoint_add_args,
            call("AddEndpointToJob", _endpoint_add),
            _details,
        ),
        unary(
            "endpoints",
            "update",
            "change an endpoint; options left out keep their value (UpdateEndpointConfig)",
            "pacerctl endpoints update ENDPOINT --timeout 10s --reason 'slow upstream'",
            _endpoint_update_args,
            call("UpdateEndpointConfig", _endpoint_update),
            _details,
        ),
        unary(
            "endpoints",
            "delete",
            "delete an endpoint; its runs stay readable (DeleteEndpoint)",
            "pacerctl endpoints delete ENDPOINT --reason 'moved'",
            _endpoint_with_reason,
            call("DeleteEndpoint", _endpoint_delete),
            _details,
        ),
        unary(
            "endpoints",
            "list",
            "list a job's endpoints and when each runs next (ListJobEndpoints)",
            "pacerctl endpoints list JOB",
            _job_only,
            call("ListJobEndpoints", _endpoint_list),
            _endpoints_view,
        ),
        unary(
            "endpoints",
            "get",
            "show one endpoint of a job, by id or name: its config, rules and schedule (from ListJobEndpoints)",
            "pacerctl endpoints get 'Production Health Monitor/check_error_rate' -o yaml",
            _endpoint_get_args,
            _endpoint_get,
            _details,
        ),
    )


def _endpoint_get_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="job id or name (or JOB/NAME alone, for the endpoint)")
    parser.add_argument("endpoint", metavar="ENDPOINT", nargs="?", help="endpoint id or name")


def _endpoint_get(session: Session, args: argparse.Namespace) -> pb.EndpointSummary:
    """The job's endpoint whose id or (unique) name is `args.endpoint`; `args.job` alone is `JOB/NAME`."""
    if args.endpoint is not None:
        return find_endpoint(session, args.endpoint, args.job)[1]
    if looks_like("ep", args.job):
        raise UsageError(f"give the endpoint's job too: endpoints get JOB {args.job}")
    return find_endpoint(session, args.job, None)[1]


def _steering_commands() -> tuple[Subcommand, ...]:
    """endpoints: the steering actions and SummarizeEndpointHealth."""
    return (
        unary(
            "endpoints",
            "hint",
            "use another interval for a while (ApplyIntervalHint)",
            "pacerctl endpoints hint 'Production Health Monitor/check_error_rate' --every 10s --ttl 30m",
            _hint_args,
            call("ApplyIntervalHint", _hint),
            _details,
        ),
        unary(
            "endpoints",
            "once",
            "schedule one extra run, even while paused (ScheduleOneShotRun)",
            "pacerctl endpoints once ENDPOINT --in 30s --reason 'pods unhealthy'",
            _once_args,
            call("ScheduleOneShotRun", _once),
            _details,
        ),
        unary(
            "endpoints",
            "pause",
            "pause an endpoint, until a time or indefinitely (PauseOrResumeEndpoint)",
            "pacerctl endpoints pause --job JOB fetch_slow_query_logs --reason 'run only when the DB degrades'",
            _pause_args,
            call("PauseOrResumeEndpoint", _pause),
            _details,
        ),
        unary(
            "endpoints",
            "resume",
            "resume a paused endpoint (PauseOrResumeEndpoint)",
            "pacerctl endpoints resume ENDPOINT --reason 'DB latency up'",
            _endpoint_with_reason,
            call("PauseOrResumeEndpoint", _resume),
            _details,
        ),
        unary(
            "endpoints",
            "clear-hints",
            "drop interval and one-shot hints: back to baseline (ClearAdaptiveHints)",
            "pacerctl endpoints clear-hints ENDPOINT --reason 'incident over'",
            _endpoint_with_reason,
            call("ClearAdaptiveHints", _clear_hints),
            _details,
        ),
        unary(
            "endpoints",
            "reset-failures",
            "reset the failure count and its backoff (ResetFailureCount)",
            "pacerctl endpoints reset-failures ENDPOINT --reason 'deployed the fix'",
            _endpoint_with_reason,
            call("ResetFailureCount", _reset_failures),
            _details,
        ),
        unary(
            "endpoints",
            "health",
            "summarize an endpoint's recent runs (SummarizeEndpointHealth)",
            "pacerctl endpoints health ENDPOINT --window-hours 6",
            _health_args,
            call("SummarizeEndpointHealth", _health),
            _details,
        ),
    )


def _run_commands() -> tuple[Subcommand, ...]:
    """runs: ListRuns, GetRunDetails (`runs watch` lives in `watch.py`)."""
    return (
        unary(
            "runs",
            "list",
            "list runs, newest first (ListRuns)",
            "pacerctl runs list --job JOB --status failure",
            _runs_list_args,
            call("ListRuns", _runs_list),
            _runs_view,
        ),
        unary(
            "runs",
            "get",
            "show one run with its HTTP outcome (GetRunDetails)",
            "pacerctl runs get RUN",
            _run_args,
            call("GetRunDetails", _run_get),
            _details,
        ),
    )


def all_commands() -> tuple[Subcommand, ...]:
    """Every request/response subcommand, in help order (`runs watch` lives in `watch.py`)."""
    return (*_job_commands(), *_endpoint_commands(), *_steering_commands(), *_run_commands())
