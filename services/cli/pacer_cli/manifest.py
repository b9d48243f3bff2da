"""The file `pacerctl apply` reads: YAML in, a validated `Manifest` out, or every problem with where it is.

The format (see examples/use-cases/*.yaml) is a top-level `jobs:` list; each job has a `name`, an optional
`description` and an `endpoints:` list; each endpoint has a `name`, a `url` and exactly one of `every: DURATION` or
`cron: EXPR` (with an optional `timezone`), and optionally `method`, `headers`, `body`, `clamp: {min, max}`,
`timeout` and `paused`. A key left out means its default (no description, GET, no headers, an empty body, no clamp,
the server's 30 s timeout, not paused), because the file states the whole desired configuration.

Validation happens before anything is sent: unknown keys, a wrong type, a malformed duration or URL, both or
neither of `every` and `cron`, and a name used twice are all reported at once, each with its path
(`jobs[0].endpoints[3].every`).
The API's fixed limits (`pacer_common.limits`: lengths of names, descriptions, URLs, header names, bodies and cron
expressions, header counts, methods, the timeout range, the longest interval) are checked here too, so an apply does
not stop half-way on something the file could have told; the interval floor is the server's to set.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pacer_cli.commands import DURATION_HELP, duration_text, parse_duration_ms
from pacer_common import limits
from pacer_common.limits import HTTP_METHODS as METHODS
from pacer_common.limits import MAX_INTERVAL_MS, Limit

DEFAULT_TIMEOUT_MS = limits.TIMEOUT_MS.default or 0  # what the API stores for timeout_ms 0

_TOP_KEYS = ("jobs",)
_JOB_KEYS = ("name", "description", "endpoints")
_ENDPOINT_KEYS = (
    "name",
    "url",
    "method",
    "headers",
    "body",
    "every",
    "cron",
    "timezone",
    "clamp",
    "timeout",
    "paused",
)
_CLAMP_KEYS = ("min", "max")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_HEADER_NAME = re.compile(limits.HEADER_NAME_PATTERN)  # an HTTP token (RFC 9110), as the API requires


@dataclass(frozen=True)
class Every:
    """An interval baseline; `text` is the duration as the file wrote it (`60s`), for the plan."""

    interval_ms: int
    text: str


@dataclass(frozen=True)
class Cron:
    """A cron baseline; an empty timezone is UTC, as in the API."""

    expression: str
    timezone: str = ""


Schedule = Every | Cron


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint as the file wants it, every default filled in. `path` locates it in the file."""

    path: str
    name: str
    url: str
    schedule: Schedule
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    min_interval_ms: int = 0
    max_interval_ms: int = 0
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    paused: bool = False


@dataclass(frozen=True)
class JobSpec:
    """One job as the file wants it, with its endpoints in file order."""

    path: str
    name: str
    description: str = ""
    endpoints: tuple[EndpointSpec, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A whole valid file: where it came from and its jobs in file order (names unique, as are endpoint names)."""

    source: str
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file: where (`jobs[0].endpoints[3].every`, or empty for the whole file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(Exception):
    """The file cannot be applied; `problems` lists everything found wrong, in file order."""

    def __init__(self, source: str, problems: tuple[Problem, ...]) -> None:
        super().__init__(f"{source}: " + "; ".join(map(str, problems)))
        self.source = source
        self.problems = problems


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error rather than last-one-wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"key {key_node.value!r} given twice",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def load(path: str) -> Manifest:
    """Read and validate the file at `path` (UTF-8); raises ManifestError naming `path` if it cannot be applied."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(path, (Problem("", f"cannot read the file: {error.strerror}"),)) from None
    except UnicodeDecodeError:
        raise ManifestError(path, (Problem("", "cannot read the file: not UTF-8 text"),)) from None
    return parse(text, path)


def parse(text: str, source: str) -> Manifest:
    """Validate YAML `text`; `source` names it in errors. Raises ManifestError with every problem found."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        raise ManifestError(source, (_syntax_problem(error),)) from None
    reader = _Reader()
    jobs = reader.document(document)
    if reader.problems:
        raise ManifestError(source, tuple(reader.problems))
    return Manifest(source, jobs)


def _syntax_problem(error: yaml.YAMLError) -> Problem:
    """A YAML syntax error as `line L, column C: what` (PyYAML counts from 0, people from 1)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return Problem("", f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}")
    return Problem("", f"not valid YAML: {error}")


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _too_long(value: str, limit: Limit) -> str | None:
    """What is wrong with `value`'s length under `limit` (characters, then UTF-8 bytes), None when it fits."""
    if limit.max_length is not None and len(value) > limit.max_length:
        return f"must be at most {limit.max_length} characters"
    if limit.max_bytes is not None and len(value.encode()) > limit.max_bytes:
        return f"must be at most {limit.max_bytes} bytes"
    return None


class _Reader:
    """Walks the parsed YAML, collecting problems; after a problem it returns a placeholder and carries on, so one
    pass reports everything. Placeholders never escape: `parse` raises when any problem was recorded."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # --- shapes --------------------------------------------------------------------------------------------------

    def fields(self, value: object, path: str, allowed: tuple[str, ...]) -> dict[str, object] | None:
        """`value` as a mapping; keys outside `allowed` are problems (and dropped). None when it is no mapping:
        the caller then reads nothing more of it, since every key would be one more "required" problem."""
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping with the keys {', '.join(allowed)}")
            return None
        for key in value:
            if key not in allowed:
                self.fail(_at(path, str(key)), f"unknown key; expected one of {', '.join(allowed)}")
        return {key: item for key, item in value.items() if key in allowed}

    def items(self, fields: Mapping[str, object], key: str, path: str, *, required: bool) -> list[object]:
        """The list under `key`; absent is an empty list unless `required`."""
        if key not in fields:
            if required:
                self.fail(_at(path, key), "required")
            return []
        value = fields[key]
        if not isinstance(value, list):
            self.fail(_at(path, key), "must be a list")
            return []
        return value

    def text(self, fields: Mapping[str, object], key: str, path: str, default: str | None = None) -> str:
        """The string under `key`; absent gives `default`, or is a problem when there is no default."""
        if key not in fields:
            if default is None:
                self.fail(_at(path, key), "required")
            return default or ""
        value = fields[key]
        if not isinstance(value, str):
            self.fail(_at(path, key), "must be a string (quote it)")
            return ""
        return value

    def flag(self, fields: Mapping[str, object], key: str, path: str) -> bool:
        value = fields.get(key, False)
        if not isinstance(value, bool):
            self.fail(_at(path, key), "must be true or false")
            return False
        return value

    def duration_ms(self, value: object, path: str) -> int | None:
        """A duration as the CLI reads them (`500ms`, `20s`, `1h30m`, or `0`); None (and a problem) otherwise."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, f"must be {DURATION_HELP}")
            return None
        try:
            return parse_duration_ms(str(value))
        except argparse.ArgumentTypeError as error:
            self.fail(path, str(error))
            return None

    # --- the document ----------------------------------------------------------------------------------------------

    def document(self, document: object) -> tuple[JobSpec, ...]:
        if document is None:
            self.fail("", "the file is empty: it needs a top-level `jobs:` list")
            return ()
        fields = self.fields(document, "", _TOP_KEYS)
        if fields is None:
            return ()
        values = self.items(fields, "jobs", "", required=True)
        jobs = tuple(self.job(value, f"jobs[{i}]") for i, value in enumerate(values))
        self.unique([(job.name, job.path) for job in jobs], "job")
        return jobs

    def unique(self, names: list[tuple[str, str]], what: str) -> None:
        """A problem for each name used again, at the later use (a missing name is a problem of its own)."""
        first: dict[str, str] = {}
        for name, path in names:
            if name and name in first:
                self.fail(_at(path, "name"), f"{what} name {name!r} is used twice (also {_at(first[name], 'name')})")
            first.setdefault(name, path)

    def name(self, fields: Mapping[str, object], path: str) -> str:
        # The API strips names, so the file's names are compared stripped too.
        name = self.text(fields, "name", path).strip()
        low, high = limits.NAME.min_length or 0, limits.NAME.max_length or 0
        if "name" in fields and isinstance(fields["name"], str) and not low <= len(name) <= high:
            self.fail(_at(path, "name"), f"must be {low} to {high} characters")
        return name

    def limited(self, value: str, limit: Limit, path: str) -> str:
        """`value`, with a problem when it is longer than `limit` allows."""
        problem = _too_long(value, limit)
        if problem:
            self.fail(path, problem)
        return value

    def job(self, value: object, path: str) -> JobSpec:
        fields = self.fields(value, path, _JOB_KEYS)
        if fields is None:
            return JobSpec(path, "")
        name = self.name(fields, path)
        description = self.limited(
            self.text(fields, "description", path, default=""), limits.DESCRIPTION, _at(path, "description")
        )
        values = self.items(fields, "endpoints", path, required=False)
        endpoints = tuple(self.endpoint(item, f"{path}.endpoints[{i}]") for i, item in enumerate(values))
        self.unique([(endpoint.name, endpoint.path) for endpoint in endpoints], "endpoint")
        return JobSpec(path, name, description, endpoints)

    def endpoint(self, value: object, path: str) -> EndpointSpec:
        fields = self.fields(value, path, _ENDPOINT_KEYS)
        if fields is None:
            return EndpointSpec(path, "", "", Every(0, ""))
        # Read in the order the keys are documented, so the problems come out in that order too.
        name, url, method = self.name(fields, path), self.url(fields, path), self.method(fields, path)
        headers = self.headers(fields.get("headers", {}), _at(path, "headers"))
        body = self.limited(self.text(fields, "body", path, default=""), limits.BODY, _at(path, "body"))
        schedule = self.schedule(fields, path)
        min_ms, max_ms = self.clamp(fields.get("clamp", {}), _at(path, "clamp"))
        timeout_ms, paused = self.timeout_ms(fields, path), self.flag(fields, "paused", path)
        return EndpointSpec(path, name, url, schedule, method, headers, body, min_ms, max_ms, timeout_ms, paused)

    # --- endpoint fields -------------------------------------------------------------------------------------------

    def url(self, fields: Mapping[str, object], path: str) -> str:
        url = self.limited(self.text(fields, "url", path), limits.URL, _at(path, "url"))
        if url and len(url) <= (limits.URL.max_length or 0):
            try:
                parts = urlsplit(url)
            except ValueError as error:
                self.fail(_at(path, "url"), f"is not a valid URL: {error}")
                return url
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.fail(_at(path, "url"), "must be an absolute http:// or https:// URL")
        return url

    def method(self, fields: Mapping[str, object], path: str) -> str:
        method = self.text(fields, "method", path, default="GET").upper()
        if method not in METHODS:
            self.fail(_at(path, "method"), f"must be one of {', '.join(METHODS)}")
        return method

    def headers(self, value: object, path: str) -> dict[str, str]:
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping of header name to value")
            return {}
        if limits.HEADERS.max_length is not None and len(value) > limits.HEADERS.max_length:
            self.fail(path, f"must have at most {limits.HEADERS.max_length} headers")
        for name, text in value.items():
            if not isinstance(name, str) or not isinstance(text, str):
                self.fail(_at(path, str(name)), "header names and values must be strings (quote them)")
            elif not _HEADER_NAME.fullmatch(name) or _too_long(name, limits.HEADER_NAME):
                self.fail(_at(path, name), "is not a valid header name")
            elif "\r" in text or "\n" in text:
                self.fail(_at(path, name), "must not contain line breaks")
        return {str(name): str(text) for name, text in value.items()}

    def schedule(self, fields: Mapping[str, object], path: str) -> Schedule:
        """Exactly one of `every` and `cron`; `timezone` only with `cron`."""
        if ("every" in fields) == ("cron" in fields):
            self.fail(path, "set exactly one of `every` or `cron`")
            return Every(0, "")
        if "timezone" in fields and "cron" not in fields:
            self.fail(_at(path, "timezone"), "applies to `cron` only")
        if "cron" in fields:
            expression = self.limited(
                self.text(fields, "cron", path).strip(), limits.CRON_EXPRESSION, _at(path, "cron")
            )
            return Cron(expression, self.text(fields, "timezone", path, default=""))
        interval_ms = self.duration_ms(fields["every"], _at(path, "every"))
        if interval_ms == 0:
            self.fail(_at(path, "every"), "must be longer than 0")
        self.longest_interval(interval_ms, _at(path, "every"))
        return Every(interval_ms or 0, str(fields["every"]).strip())

    def longest_interval(self, interval_ms: int | None, path: str) -> None:
        if interval_ms is not None and interval_ms > MAX_INTERVAL_MS:
            self.fail(path, f"must be at most {duration_text(MAX_INTERVAL_MS)}")

    def clamp(self, value: object, path: str) -> tuple[int, int]:
        """(min, max) in milliseconds; 0 (or a bound left out) means no bound."""
        fields = self.fields(value, path, _CLAMP_KEYS)
        if fields is None:
            return 0, 0
        min_ms, max_ms = (self.duration_ms(fields.get(key, 0), _at(path, key)) or 0 for key in _CLAMP_KEYS)
        for key, bound_ms in zip(_CLAMP_KEYS, (min_ms, max_ms), strict=True):
            self.longest_interval(bound_ms, _at(path, key))
        if min_ms and max_ms and min_ms > max_ms:
            self.fail(path, "min must not exceed max")
        return min_ms, max_ms

    def timeout_ms(self, fields: Mapping[str, object], path: str) -> int:
        if "timeout" not in fields:
            return DEFAULT_TIMEOUT_MS
        timeout_ms = self.duration_ms(fields["timeout"], _at(path, "timeout"))
        low, high = limits.TIMEOUT_MS.minimum or 0, limits.TIMEOUT_MS.maximum or 0
        if timeout_ms is not None and not low <= timeout_ms <= high:
            self.fail(_at(path, "timeout"), f"must be between {duration_text(low)} and {duration_text(high)}")
        return timeout_ms or DEFAULT_TIMEOUT_MS
