"""`pacerctl audit`: who changed a job or an endpoint, what they did and why (ListAuditRecords).

An addition beside the 17 actions: the same trail the console shows beside its timeline, for people at a terminal.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli import render
from pacer_cli.commands import Subcommand, call, unary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--job", metavar="JOB", help="the job's records and its endpoints' (the job by id or name)")
    target.add_argument("--endpoint", metavar="ENDPOINT", help="one endpoint's records: its id, or JOB/NAME")
    parser.add_argument("--page-size", type=int, default=0, help="records per page, 1 to 100 (default 50)")
    parser.add_argument("--page-token", default="", help="the token printed after the previous page")


def request(args: argparse.Namespace, _now: datetime) -> pb.ListAuditRecordsRequest:
    return pb.ListAuditRecordsRequest(
        job_id=args.job or "", endpoint_id=args.endpoint or "", page_size=args.page_size, page_token=args.page_token
    )


def table(response: pb.ListAuditRecordsResponse, _args: argparse.Namespace) -> str:
    """The records, newest first, with the token of the next page when there is one."""
    if not response.records:
        return "no audit records\n"
    rows = [
        (render.format_time(r.at), r.actor, r.action, f"{r.target_type} {r.target_id}", r.reason or "-")
        for r in response.records
    ]
    text = render.table(("AT", "WHO", "WHAT", "TARGET", "WHY"), rows)
    if response.next_page_token:
        text += f"more: --page-token {response.next_page_token}\n"
    return text


def subcommand() -> Subcommand:
    """`pacerctl audit list`."""
    return unary(
        "audit",
        "list",
        "who changed a job or an endpoint, what and why, newest first (ListAuditRecords)",
        "pacerctl audit list --endpoint ENDPOINT",
        add_arguments,
        call("ListAuditRecords", request),
        table,
    )
