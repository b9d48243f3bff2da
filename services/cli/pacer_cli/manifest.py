"""The file `pacerctl apply` reads: YAML in, a validated `Manifest` out, or every problem with where it is.

The format (see examples/use-cases/*.yaml) is a top-level `jobs:` list; each job has a `name`, an optional
`description` and an `endpoints:` list; each endpoint has a `name`, a `url` and exactly one of `every: DURATION` or
`cron: EXPR` (with an optional `timezone`), and optionally `method`, `headers`, `body`, `clamp: {min, max}`,
`timeout`, `retry: {attempts, backoff}`, `paused`, `jitter`, `signing_secret` and `policies`. A key left out means
its default (no description, GET, no headers, an empty body, no clamp, the server's 30 s timeout, one attempt per run
(backoff 1s), not paused, no jitter, unsigned, no rules), because the file states the whole desired configuration.

A signing secret is never written in the file: `signing_secret` must be `${VARIABLE}`, read from the environment when
the file is loaded (a variable that is unset or empty is a problem). A header value may come from elsewhere too:
`${VARIABLE}`, `{valueFrom: {env: VARIABLE}}` or `{valueFrom: {file: PATH}}` (relative to the file's folder), so a
manifest holds no credentials. Policies (docs/policies.md) are a list of rules
`{name, when, then: [action, ...], cooldown}`; an action is a mapping with an optional `endpoint` (another endpoint
of the same job, by name) and exactly one of `interval_hint: {every, ttl}`, `one_shot: {delay}`, `pause: {for}`,
`resume`, `clear_hints` or `reset_failures` (those three take no settings: `resume: {}` or just `resume:`).

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
    "retry",
    "paused",
    "jitter",
    "signing_secret",
    "policies",
)
_CLAMP_KEYS = ("min", "max")
_RETRY_KEYS = ("attempts", "backoff")
_POLICY_KEYS = ("name", "when", "then", "cooldown")
_ACTION_KINDS = ("interval_hint", "one_shot", "pause", "resume", "clear_hints", "reset_failures")
_ACTION_KEYS = ("endpoint", *_ACTION_KINDS)
_ACTION_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "interval_hint": ("every", "ttl"),
    "one_shot": ("delay",),
    "pause": ("for",),
    "resume": (),
    "clear_hints": (),
    "reset_failures": (),
}
MAX_POLICIES = limits.POLICIES.max_length or 0
MAX_ACTIONS = limits.POLICY_THEN.max_length or 0
MAX_WHEN_CHARS = limits.POLICY_WHEN.max_length or 0
POLICY_NAME = re.compile(rf"^[a-z0-9_-]{{1,{limits.POLICY_NAME.max_length}}}$")


def _bounds(limit: Limit) -> tuple[int, int]:
    return limit.minimum or 0, limit.maximum or 0


MAX_COOLDOWN_MS = _bounds(limits.POLICY_COOLDOWN_MS)[1]
HINT_TTL_MS = _bounds(limits.POLICY_HINT_TTL_MS)
DEFAULT_HINT_TTL_MS = limits.POLICY_HINT_TTL_MS.default or 0  # what the API applies for ttl_ms 0
MAX_DELAY_MS = _bounds(limits.POLICY_ONE_SHOT_DELAY_MS)[1]
PAUSE_MS = _bounds(limits.POLICY_PAUSE_FOR_MS)
MAX_JITTER_MS = _bounds(limits.JITTER_MS)[1]
RETRY_ATTEMPTS = _bounds(limits.RETRY_MAX_ATTEMPTS)
RETRY_BACKOFF_MS = _bounds(limits.RETRY_BACKOFF_MS)
DEFAULT_BACKOFF_MS = limits.RETRY_BACKOFF_MS.default or 0  # what the API stores for backoff_ms 0
SECRET_CHARS = (limits.SIGNING_SECRET.min_length or 0, limits.SIGNING_SECRET.max_length or 0)
_SECRET_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
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
class IntervalHint:
    """Run every `interval_ms` for `ttl_ms` (the API's default hour when the file leaves `ttl` out)."""

    interval_ms: int
    ttl_ms: int = DEFAULT_HINT_TTL_MS


@dataclass(frozen=True)
class OneShot:
    """One extra run `delay_ms` after the triggering run is recorded."""

    delay_ms: int = 0


@dataclass(frozen=True)
class Pause:
    """Pause for `for_ms`; 0 pauses until resumed."""

    for_ms: int = 0


@dataclass(frozen=True)
class Resume:
    """Resume a paused endpoint."""


@dataclass(frozen=True)
class ClearHints:
    """Drop interval hints and one-shots."""


@dataclass(frozen=True)
class ResetFailures:
    """Reset the failure count and its backoff."""


Step = IntervalHint | OneShot | Pause | Resume | ClearHints | ResetFailures


@dataclass(frozen=True)
class ActionSpec:
    """One action of a rule: `step` on the endpoint named `endpoint` (empty: the rule's own endpoint)."""

    step: Step
    endpoint: str = ""


@dataclass(frozen=True)
class PolicySpec:
    """One rule: when the CEL condition `when` holds on a recorded run, take `then` in order (at most once per
    `cooldown_ms`)."""

    name: str
    when: str
    then: tuple[ActionSpec, ...]
    cooldown_ms: int = 0


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
    jitter_ms: int = 0
    signing_secret: str = field(default="", repr=False)  # read from the environment, never from the file
    signing_secret_from: str = ""  # the variable it was read from, to name in a plan
    policies: tuple[PolicySpec, ...] = ()
    # Attempts per run (1: no retry) and the wait before the second (pacer_common.retries).
    retry_attempts: int = 1
    retry_backoff_ms: int = DEFAULT_BACKOFF_MS


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


def load(path: str, environ: Mapping[str, str]) -> Manifest:
    """Read and validate the file at `path` (UTF-8), its `${VARIABLE}` secrets from `environ`; raises ManifestError
    naming `path` if it cannot be applied."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(path, (Problem("", f"cannot read the file: {error.strerror}"),)) from None
    except UnicodeDecodeError:
        raise ManifestError(path, (Problem("", "cannot read the file: not UTF-8 text"),)) from None
    return parse(text, path, environ)


def parse(text: str, source: str, environ: Mapping[str, str] | None = None) -> Manifest:
    """Validate YAML `text`, reading `${VARIABLE}` secrets from `environ` (none set when None); `source` names it in
    errors. Raises ManifestError with every problem found."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        raise ManifestError(source, (_syntax_problem(error),)) from None
    reader = _Reader(environ or {}, Path(source).parent)
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

    def __init__(self, environ: Mapping[str, str], folder: Path = Path()) -> None:
        self.problems: list[Problem] = []
        self.environ = environ
        self.folder = folder  # where a header's `valueFrom: {file: PATH}` is found from

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
        timeout_ms = self.timeout_ms(fields, path)
        attempts, backoff_ms = self.retry(fields.get("retry", {}), _at(path, "retry"))
        paused = self.flag(fields, "paused", path)
        jitter_ms = self.jitter_ms(fields, schedule, path)
        secret, variable = self.secret(fields, path)
        policies = self.policies(fields, path)
        return EndpointSpec(
            path,
            name,
            url,
            schedule,
            method,
            headers,
            body,
            min_ms,
            max_ms,
            timeout_ms,
            paused,
            jitter_ms,
            secret,
            variable,
            policies,
            attempts,
            backoff_ms,
        )

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
        headers: dict[str, str] = {}
        for name, raw in value.items():
            if not isinstance(name, str):
                self.fail(_at(path, str(name)), "header names must be strings (quote them)")
                continue
            text = self.header_value(raw, _at(path, name))
            if text is None:
                continue
            if not _HEADER_NAME.fullmatch(name) or _too_long(name, limits.HEADER_NAME):
                self.fail(_at(path, name), "is not a valid header name")
            elif "\r" in text or "\n" in text:
                self.fail(_at(path, name), "must not contain line breaks")
            headers[name] = text
        return headers

    def header_value(self, raw: object, where: str) -> str | None:
        """A header's value: a string as written; `${VARIABLE}` or `{valueFrom: {env: VARIABLE}}` from the
        environment; `{valueFrom: {file: PATH}}` from a file (relative to the manifest's folder, a final newline
        dropped), so a manifest need not hold credentials. A value read from elsewhere is never echoed."""
        if isinstance(raw, str):
            reference = _SECRET_REFERENCE.fullmatch(raw)
            return self.from_environment(reference.group(1), where) if reference else raw
        if not isinstance(raw, dict):
            self.fail(where, "header values must be strings (quote them), or {valueFrom: ...}")
            return None
        source = raw.get("valueFrom") if isinstance(raw, dict) and set(raw) == {"valueFrom"} else None
        if isinstance(source, dict) and len(source) == 1:
            ((kind, name),) = source.items()
            if kind == "env" and isinstance(name, str):
                return self.from_environment(name, where)
            if kind == "file" and isinstance(name, str):
                return self.from_file(name, where)
        self.fail(where, "must be a string, `${VARIABLE}`, {valueFrom: {env: VARIABLE}} or {valueFrom: {file: PATH}}")
        return None

    def from_environment(self, variable: str, where: str) -> str | None:
        text = self.environ.get(variable)
        if not text:
            self.fail(where, f"the environment variable {variable} is not set (or empty)")
            return None
        return text

    def from_file(self, name: str, where: str) -> str | None:
        path = self.folder / Path(name).expanduser()
        try:
            return path.read_text(encoding="utf-8").removesuffix("\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            self.fail(where, f"cannot read {name}: {reason}")
            return None

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

    def retry(self, value: object, path: str) -> tuple[int, int]:
        """(attempts, backoff in ms): 1 to 5 attempts per run, the wait before the second 100 ms to 1 minute."""
        fields = self.fields(value, path, _RETRY_KEYS)
        if fields is None:
            return 1, DEFAULT_BACKOFF_MS
        attempts = fields.get("attempts", 1)
        low, high = RETRY_ATTEMPTS
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not low <= attempts <= high:
            self.fail(_at(path, "attempts"), f"must be a whole number from {low} to {high}")
            attempts = 1
        if "backoff" not in fields:
            return attempts, DEFAULT_BACKOFF_MS
        backoff_ms = self.duration_ms(fields["backoff"], _at(path, "backoff"))
        low, high = RETRY_BACKOFF_MS
        if backoff_ms is not None and not low <= backoff_ms <= high:
            self.fail(_at(path, "backoff"), f"must be between {duration_text(low)} and {duration_text(high)}")
        return attempts, backoff_ms or DEFAULT_BACKOFF_MS

    def jitter_ms(self, fields: Mapping[str, object], schedule: Schedule, path: str) -> int:
        """The jitter; at most an hour, and less than an interval baseline (a run never slides into the next slot)."""
        if "jitter" not in fields:
            return 0
        jitter_ms = self.duration_ms(fields["jitter"], _at(path, "jitter"))
        if jitter_ms is None:
            return 0
        if jitter_ms > MAX_JITTER_MS:
            self.fail(_at(path, "jitter"), f"must be at most {duration_text(MAX_JITTER_MS)}")
        elif isinstance(schedule, Every) and schedule.interval_ms and jitter_ms >= schedule.interval_ms:
            self.fail(_at(path, "jitter"), "must be shorter than the interval (`every`)")
        return jitter_ms

    def secret(self, fields: Mapping[str, object], path: str) -> tuple[str, str]:
        """(secret, variable): `signing_secret` must be `${VARIABLE}`, and the variable must hold 32 to 256
        characters. The value is never echoed in a problem."""
        if "signing_secret" not in fields:
            return "", ""
        where = _at(path, "signing_secret")
        reference = fields["signing_secret"]
        match = _SECRET_REFERENCE.fullmatch(reference) if isinstance(reference, str) else None
        if match is None:
            self.fail(where, "must be `${VARIABLE}`: a secret is read from the environment, never written in the file")
            return "", ""
        variable = match.group(1)
        secret = self.environ.get(variable, "")
        low, high = SECRET_CHARS
        if not secret:
            self.fail(where, f"the environment variable {variable} is not set (or empty)")
        elif not low <= len(secret) <= high:
            self.fail(where, f"the environment variable {variable} must hold {low} to {high} characters")
        return secret, variable

    # --- policies --------------------------------------------------------------------------------------------------

    def policies(self, fields: Mapping[str, object], path: str) -> tuple[PolicySpec, ...]:
        values = self.items(fields, "policies", path, required=False)
        if len(values) > MAX_POLICIES:
            self.fail(_at(path, "policies"), f"must have at most {MAX_POLICIES} rules")
        rules = tuple(self.policy(value, f"{path}.policies[{i}]") for i, value in enumerate(values))
        self.unique([(rule.name, f"{path}.policies[{i}]") for i, rule in enumerate(rules)], "rule")
        return rules

    def policy(self, value: object, path: str) -> PolicySpec:
        fields = self.fields(value, path, _POLICY_KEYS)
        if fields is None:
            return PolicySpec("", "", ())
        name = self.text(fields, "name", path)
        if "name" in fields and isinstance(fields["name"], str) and not POLICY_NAME.fullmatch(name):
            self.fail(_at(path, "name"), "must be 1 to 64 of a-z, 0-9, - and _")
        when = self.text(fields, "when", path).strip()
        if "when" in fields and not when:
            self.fail(_at(path, "when"), "must not be empty")
        elif len(when) > MAX_WHEN_CHARS:
            self.fail(_at(path, "when"), f"must be at most {MAX_WHEN_CHARS} characters")
        values = self.items(fields, "then", path, required=True)
        if "then" in fields and not 1 <= len(values) <= MAX_ACTIONS:
            self.fail(_at(path, "then"), f"must have 1 to {MAX_ACTIONS} actions")
        then = tuple(self.action(item, f"{path}.then[{i}]") for i, item in enumerate(values))
        cooldown_ms = self.bounded_ms(fields, "cooldown", path, (0, MAX_COOLDOWN_MS), 0)
        return PolicySpec(name, when, then, cooldown_ms)

    def bounded_ms(
        self, fields: Mapping[str, object], key: str, path: str, bounds: tuple[int, int], default: int
    ) -> int:
        """The duration under `key` within `bounds` (0 always allowed where `default` is 0); `default` if absent."""
        if key not in fields:
            return default
        value_ms = self.duration_ms(fields[key], _at(path, key))
        if value_ms is None:
            return default
        low, high = bounds
        if not low <= value_ms <= high and not (value_ms == 0 and default == 0):
            self.fail(_at(path, key), f"must be between {duration_text(low)} and {duration_text(high)}")
        return value_ms

    def action(self, value: object, path: str) -> ActionSpec:
        fields = self.fields(value, path, _ACTION_KEYS)
        if fields is None:
            return ActionSpec(Resume())
        kinds = [kind for kind in _ACTION_KINDS if kind in fields]
        endpoint = self.text(fields, "endpoint", path, default="").strip()
        if len(kinds) != 1:
            self.fail(path, f"set exactly one of {', '.join(_ACTION_KINDS)}")
            return ActionSpec(Resume(), endpoint)
        kind = kinds[0]
        settings = {} if fields[kind] is None else fields[kind]
        where = _at(path, kind)
        given = self.fields(settings, where, _ACTION_SETTINGS[kind]) if _ACTION_SETTINGS[kind] else None
        if not _ACTION_SETTINGS[kind] and settings != {}:
            self.fail(where, "takes no settings: write `{}` or nothing")
        return ActionSpec(self.step(kind, given or {}, where), endpoint)

    def step(self, kind: str, fields: Mapping[str, object], path: str) -> Step:
        match kind:
            case "interval_hint":
                if "every" not in fields:
                    self.fail(_at(path, "every"), "required")
                every_ms = self.bounded_ms(fields, "every", path, (1, MAX_INTERVAL_MS), 1)
                ttl_ms = self.bounded_ms(fields, "ttl", path, HINT_TTL_MS, DEFAULT_HINT_TTL_MS)
                return IntervalHint(every_ms, ttl_ms)
            case "one_shot":
                return OneShot(self.bounded_ms(fields, "delay", path, (0, MAX_DELAY_MS), 0))
            case "pause":
                return Pause(self.bounded_ms(fields, "for", path, PAUSE_MS, 0))
            case "resume":
                return Resume()
            case "clear_hints":
                return ClearHints()
            case _:
                return ResetFailures()
