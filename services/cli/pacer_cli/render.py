"""Turning responses into text: aligned tables and key/value blocks for people, the protobuf JSON mapping for programs.

Every function here is pure (message in, string out), so the CLI's output can be tested without a server. Times are
shown in UTC as `2026-01-05 10:00:00Z` whatever the machine's time zone, so output pasted between people in different
places means the same thing; an unset time is `-`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Protocol

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.client import ApiError

UNSET = "-"
_TIMESTAMP = "google.protobuf.Timestamp"
_SOURCE_ENUM = "pacer.control.v1.RunSource"
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class EnumType(Protocol):
    """What rendering needs of an enum descriptor (the pure-Python and the upb descriptors both fit)."""

    @property
    def name(self) -> str: ...
    @property
    def full_name(self) -> str: ...
    @property
    def values_by_number(self) -> Mapping[int, _Named]: ...


class _FullNamed(Protocol):
    @property
    def full_name(self) -> str: ...


class _MessageField(Protocol):
    @property
    def message_type(self) -> _FullNamed | None: ...


def _is_timestamp(field: _MessageField) -> bool:
    return field.message_type is not None and field.message_type.full_name == _TIMESTAMP


def to_json(message: Message, *, compact: bool = False) -> str:
    """The protobuf JSON mapping of `message`, with proto field names and zero values shown.

    Zero values are printed because a script reading `failure_count` should find 0, not a missing key; int64 fields
    are JSON numbers, as in the REST gateway's and the MCP server's answers (a string only for a value a double cannot
    hold exactly). `compact` gives one line (for JSON Lines streams).
    """
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=None if compact else 2,
        unquote_int64_if_possible=True,
    )


def to_yaml(message: Message) -> str:
    """The same mapping as `to_json` (proto field names, zero values shown, int64 as numbers), as YAML."""
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def error_json(error: ApiError) -> str:
    """A refused call as one JSON object (for `-o json`): code, message, and the field and quota violations."""
    document: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.field_violations:
        document["field_violations"] = [
            {"field": v.field, "description": v.description} for v in error.field_violations
        ]
    if error.quota_violations:
        document["quota_violations"] = [
            {"subject": q.subject, "description": q.description} for q in error.quota_violations
        ]
    if error.retry_after_s is not None:
        document["retry_after_s"] = error.retry_after_s
    return json.dumps({"error": document}) + "\n"


def format_time(stamp: Timestamp) -> str:
    """`2026-01-05 10:00:00Z`, or `-` for the unset (zero) timestamp."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return UNSET
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_millis(millis: int) -> str:
    """A duration for people: `850ms`, `12.3s`, `2m5s`, `1h30m`, `2d`."""
    if millis < 1000:
        return f"{millis}ms"
    if millis < 60_000:
        return f"{millis / 1000:.1f}s".replace(".0s", "s")
    parts: list[str] = []
    remaining_s = millis // 1000
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining_s = divmod(remaining_s, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def enum_label(enum: EnumType, number: int) -> str:
    """An enum value without its type prefix: `SUCCESS`, `ACTIVE`; run sources as the design names them.

    Sources read `baseline-interval`, `ai-oneshot`, ... (the governor's vocabulary); an unknown number (a newer
    server) is shown as the number rather than failing.
    """
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = _CAMEL_BOUNDARY.sub("_", enum.name).upper() + "_"
    label = value.name.removeprefix(prefix)
    if label == "UNSPECIFIED":
        return UNSET
    return label.lower().replace("_", "-") if enum.full_name == _SOURCE_ENUM else label


def status_label(number: int) -> str:
    """A RunStatus without its prefix."""
    return enum_label(pb.RunStatus.DESCRIPTOR, number)


def source_label(number: int) -> str:
    """A RunSource in the governor's vocabulary."""
    return enum_label(pb.RunSource.DESCRIPTOR, number)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: frozenset[int] = frozenset()) -> str:
    """Columns padded to their widest cell, two spaces apart; columns in `right` are right-aligned (numbers).

    The last column is not padded, so no line has trailing spaces. Ends with a newline.
    """
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "".join(line(cells) + "\n" for cells in (headers, *rows))


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """`key  value` lines with the values aligned; a multi-line value continues under its first line."""
    width = max((len(key) for key, _ in pairs), default=0)
    lines: list[str] = []
    for key, value in pairs:
        first, *rest = value.split("\n") if value else [""]
        lines.append(f"{key.ljust(width)}  {first}".rstrip())
        lines.extend(f"{' ' * width}  {more}".rstrip() for more in rest)
    return "".join(line + "\n" for line in lines)


def message_pairs(message: Message, prefix: str = "") -> list[tuple[str, str]]:
    """The fields of a (non-list) message as (name, text) pairs, nested messages flattened as `last_run.status`, the
    items of a list of messages as `policy_firings[0].rule`, a list of values on one line (`a; b`); `-` for none."""
    pairs: list[tuple[str, str]] = []
    for field in message.DESCRIPTOR.fields:
        name = prefix + field.name
        value = getattr(message, field.name)
        if field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE:
            items = [message_pairs(item, f"{name}[{i}].") for i, item in enumerate(value)]
            pairs.extend([pair for item in items for pair in item] or [(name, UNSET)])
        elif field.is_repeated:
            pairs.append((name, "; ".join(str(item) for item in value) or UNSET))
        elif _is_timestamp(field):
            pairs.append((name, format_time(value)))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            nested = message_pairs(value, name + ".") if message.HasField(field.name) else [(name, UNSET)]
            pairs.extend(nested)
        elif field.enum_type is not None:
            pairs.append((name, enum_label(field.enum_type, value)))
        elif field.type == FieldDescriptor.TYPE_BOOL:
            pairs.append((name, "yes" if value else "no"))
        else:
            pairs.append((name, str(value)))
    return pairs


def details(message: Message) -> str:
    """A single-object response as aligned key/value lines; a lone nested message (GetJob's `job`) is unwrapped."""
    fields = message.DESCRIPTOR.fields
    only = fields[0] if len(fields) == 1 else None
    if only is not None and only.type == FieldDescriptor.TYPE_MESSAGE and not _is_timestamp(only):
        return key_values(message_pairs(getattr(message, only.name)))
    return key_values(message_pairs(message))


def jobs_table(response: pb.ListJobsResponse) -> str:
    """ListJobs as a table, with the token of the next page when there is one."""
    if not response.jobs:
        return "no jobs\n"
    rows = [
        (
            job.job_id,
            job.name,
            enum_label(pb.JobStatus.DESCRIPTOR, job.status),
            str(job.endpoint_count),
            format_time(job.last_run_at),
        )
        for job in response.jobs
    ]
    text = table(("ID", "NAME", "STATUS", "ENDPOINTS", "LAST RUN"), rows, right=frozenset({3}))
    if response.next_page_token:
        text += f"more: --page-token {response.next_page_token} (or --all)\n"
    return text


def _paused(endpoint: pb.EndpointSummary) -> str:
    if not endpoint.paused:
        return "no"
    return "until " + format_time(endpoint.paused_until) if endpoint.HasField("paused_until") else "indefinitely"


def endpoints_table(response: pb.ListJobEndpointsResponse, *, wide: bool = False) -> str:
    """ListJobEndpoints as a table: when each endpoint runs next, and why; `wide` adds what it calls and how often."""
    if not response.endpoints:
        return "no endpoints\n"
    rows = []
    for e in response.endpoints:
        row = [
            e.endpoint_id,
            e.name,
            format_time(e.next_run_at),
            source_label(e.next_run_source),
            format_time(e.last_run_at),
            str(e.failure_count),
            _paused(e),
        ]
        if wide:
            row += [e.method, e.url, _cadence(e.baseline), str(len(e.policies)), "yes" if e.signed else "no"]
        rows.append(tuple(row))
    headers: tuple[str, ...] = ("ID", "NAME", "NEXT RUN", "SOURCE", "LAST RUN", "FAILURES", "PAUSED")
    if wide:
        headers += ("METHOD", "URL", "BASELINE", "RULES", "SIGNED")
    return table(headers, rows, right=frozenset({5}))


def _cadence(baseline: pb.Baseline) -> str:
    if baseline.HasField("cron"):
        zone = f" ({baseline.cron.timezone})" if baseline.cron.timezone else ""
        return f"cron {baseline.cron.expression}{zone}"
    return f"every {format_millis(baseline.interval_ms)}" if baseline.interval_ms else UNSET


def _run_row(run: pb.RunSummary) -> tuple[str, ...]:
    finished = run.status not in (pb.RUN_STATUS_RUNNING, pb.RUN_STATUS_UNSPECIFIED)
    duration = format_millis(run.duration_ms) if finished else UNSET
    return (
        run.run_id,
        run.endpoint_id,
        format_time(run.scheduled_for),
        format_time(run.started_at),
        status_label(run.status),
        duration,
        source_label(run.source),
    )


def runs_table(response: pb.ListRunsResponse, offset: int = 0) -> str:
    """ListRuns as a table, with which slice of the matching runs it shows."""
    if not response.runs:
        return f"no runs (of {response.total} matching)\n" if response.total else "no runs\n"
    headers = ("ID", "ENDPOINT", "SCHEDULED", "STARTED", "STATUS", "DURATION", "SOURCE")
    text = table(headers, [_run_row(run) for run in response.runs], right=frozenset({5}))
    last = offset + len(response.runs)
    text += f"runs {offset + 1}-{last} of {response.total}"
    return text + (f"; more: --offset {last}\n" if last < response.total else "\n")


def run_line(run: pb.RunSummary) -> str:
    """One run as a fixed-width line, for a live tail where later rows cannot re-align earlier ones."""
    _, endpoint, scheduled, _, status, duration, source = _run_row(run)
    return f"{scheduled}  {status:<7}  {duration:>7}  {endpoint}  {run.run_id}  {source}\n"


def error_text(error: ApiError, flag_for: Callable[[str], str | None], addr: str) -> str:
    """The stderr text of a refused call: `error: CODE: message`, then one line per violation.

    `flag_for` names the command-line option behind a request field, so `baseline.interval_ms` points at `--every`.
    """
    lines = [f"error: {error.code}: {error.message}"]
    for violation in error.field_violations:
        flag = flag_for(violation.field)
        lines.append(f"  {violation.field}: {violation.description}" + (f" ({flag})" if flag else ""))
    lines += [f"  {quota.subject}: {quota.description}" for quota in error.quota_violations]
    if error.retry_after_s is not None:
        lines.append(f"  retry after {error.retry_after_s:g} s")
    if error.code == "UNAVAILABLE":
        lines.append(f"  is the control plane running at {addr}? (set --addr or PACER_CONTROL_ADDR)")
    if error.code == "UNAUTHENTICATED":
        lines.append("  check the key: --api-key, PACER_API_KEY or var/dev-api-key")
    return "".join(line + "\n" for line in lines)
