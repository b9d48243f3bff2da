"""`pacerctl runs watch`: a live tail of finished runs, built on polling ListRuns.

The API has no stream of run events, so the watch polls the newest runs and prints each run once, when it is first
seen finished. Runs that had finished before the watch started are not printed (like `tail -f` started at the end).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli import render
from pacer_cli.commands import ENDPOINT_HELP, Session, Subcommand, resolve_names, runs_request
from pacer_common.client import ApiError

PAGE_SIZE = 100
# More than PAGE_SIZE * MAX_PAGES runs finishing between two polls would be a scheduler under heavy load; the
# watch then shows the newest ones rather than falling ever further behind.
MAX_PAGES = 10
DEFAULT_INTERVAL_S = 1.0


def _finished(run: pb.RunSummary) -> bool:
    return run.status not in (pb.RUN_STATUS_UNSPECIFIED, pb.RUN_STATUS_RUNNING)


class RunTail:
    """Remembers what the newest window of runs held, to tell which finished runs have not been printed yet.

    ListRuns lists newest scheduled first, so a run that can still finish is in the newest window; remembering only
    the ids of the last window keeps memory bounded however long the watch runs.
    """

    def __init__(self) -> None:
        self._printed: set[str] = set()
        self._known: set[str] = set()

    def overlaps(self, page: Sequence[pb.RunSummary]) -> bool:
        """True when `page` reaches back to runs the previous window held (no gap to fetch)."""
        return any(run.run_id in self._known for run in page)

    def advance(self, window: Sequence[pb.RunSummary]) -> list[pb.RunSummary]:
        """Take the newest runs; return the finished ones not returned before, in scheduled order, each once."""
        finished = [run for run in window if _finished(run)]
        new = [run for run in finished if run.run_id not in self._printed]
        self._printed = {run.run_id for run in finished}
        self._known = {run.run_id for run in window}
        return sorted(new, key=lambda run: (run.scheduled_for.ToNanoseconds(), run.run_id))


def fetch_window(session: Session, request: pb.ListRunsRequest, tail: RunTail, max_pages: int) -> list[pb.RunSummary]:
    """The newest runs, paging back until a page overlaps what `tail` saw last time (or `max_pages`)."""
    window: dict[str, pb.RunSummary] = {}
    for page_number in range(max_pages):
        request.offset = page_number * PAGE_SIZE
        page = session.call("ListRuns", request).runs
        # Offsets shift while runs arrive, so consecutive pages can repeat a run: keep one row per id.
        window.update((run.run_id, run) for run in page if run.run_id not in window)
        if len(page) < PAGE_SIZE or tail.overlaps(page):
            break
    return list(window.values())


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: a positive number of seconds, e.g. 0.5 or 2")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The filters of `runs watch` and its poll interval."""
    parser.add_argument("--job", metavar="JOB", help="only runs of this job (id or name)")
    parser.add_argument("--endpoint", metavar="ENDPOINT", help="only runs of this endpoint: " + ENDPOINT_HELP)
    parser.add_argument("--status", choices=("success", "failure"), help="only runs with this outcome")
    parser.add_argument(
        "--interval", type=_positive_seconds, default=DEFAULT_INTERVAL_S, metavar="SECONDS", help="poll interval"
    )


class _Watch:
    """One running watch: the filter, what was seen, and whether the control plane is currently unreachable."""

    def __init__(self, session: Session, request: pb.ListRunsRequest) -> None:
        self._session = session
        self._request = request
        self._tail = RunTail()
        self._unavailable = False

    def prime(self) -> None:
        """Remember the runs that finished before the watch started, so only later ones are printed."""
        self._tail.advance(fetch_window(self._session, self._request, self._tail, max_pages=1))

    def poll(self) -> None:
        """Print the newly finished runs; an unavailable control plane is reported once and retried, not fatal."""
        try:
            new = self._tail.advance(fetch_window(self._session, self._request, self._tail, MAX_PAGES))
        except ApiError as error:
            if error.code != "UNAVAILABLE":
                raise
            if not self._unavailable:
                self._session.stderr.write("control plane unavailable; retrying\n")
                self._session.stderr.flush()
            self._unavailable = True
            return
        self._unavailable = False
        for run in new:
            json = self._session.json
            self._session.emit(render.to_json(run, compact=True) + "\n" if json else render.run_line(run))


def watch(session: Session, args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    """Print each run that finishes from now on, once, until interrupted; Ctrl-C ends the watch with exit code 0.

    The "watching" line goes to stderr after the first poll: every run finishing after it is printed.
    """
    resolve_names(session, args)
    request = runs_request(args)
    request.limit = PAGE_SIZE
    running = _Watch(session, request)
    try:
        running.prime()
        session.stderr.write(f"watching runs every {args.interval:g}s; Ctrl-C to stop\n")
        session.stderr.flush()
        while True:
            sleep(args.interval)
            running.poll()
    except KeyboardInterrupt:
        return 0


def subcommand() -> Subcommand:
    """`pacerctl runs watch`."""
    return Subcommand(
        "runs",
        "watch",
        "print each run as it finishes, until Ctrl-C (polls ListRuns)",
        "pacerctl runs watch --job JOB --interval 2",
        add_arguments,
        watch,
    )
