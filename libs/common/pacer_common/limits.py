"""The public API's limits, declared once and keyed by the request field each one bounds.

The control plane enforces these (`pacer_control.validation`), and every front door advertises or pre-checks the same
numbers: the REST gateway's OpenAPI document, the MCP tool schemas and `pacerctl apply`'s manifest checks. Tests walk
`LIMITS` against each of them, so a number changed here changes everywhere or fails a test.

Pure data: no protobuf, no I/O. A key is (full proto message name, proto field name); a map key's limit is keyed by
the map's entry message (`...HeadersEntry`, `key`), as the descriptors name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, Literal

FieldKey = tuple[str, str]
# What a proto3 zero means for a field without presence: nothing (the value is refused), "use the default", "the field
# is not set" (a baseline's interval when cron is used) or "no bound" (a clamp).
Zero = Literal["refused", "default", "unset", "no_bound"]

HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# An HTTP field name is a token (RFC 9110 section 5.1).
HEADER_NAME_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
MAX_INTERVAL_MS: Final = 366 * 24 * 3600 * 1000
MAX_CRON_EXPRESSION_CHARS: Final = 200


@dataclass(frozen=True)
class Limit:
    """The values a field accepts.

    Strings: `min_length`/`max_length` in characters, `max_bytes` in UTF-8 bytes, `pattern` a regular expression the
    whole value must match. Maps: `max_length` counts entries and `max_bytes` the names and values together.
    Integers: `minimum`/`maximum` inclusive; `floor` says the service's interval floor (an operator setting, 1000 ms by
    default) raises `minimum` at run time; `zero` says what a proto3 zero means, `default` what an omitted value is.
    """

    min_length: int | None = None
    max_length: int | None = None
    max_bytes: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    floor: bool = False
    zero: Zero = "refused"
    default: int | None = None

    def lowest(self, floor_ms: int) -> int | None:
        """The least non-zero value accepted where the interval floor is `floor_ms`."""
        if self.floor and self.minimum is not None:
            return max(self.minimum, floor_ms)
        return self.minimum

    def accepts_zero(self, omittable: bool) -> bool:
        """True when 0 is accepted outside the range: on the wire whenever it stands for something; where a value can
        be left out instead (an MCP argument, a manifest key), only where it means "no bound"."""
        return self.zero == "no_bound" if omittable else self.zero != "refused"


NAME: Final = Limit(min_length=1, max_length=200)
DESCRIPTION: Final = Limit(max_length=2000)
REASON: Final = Limit(max_length=500)
URL: Final = Limit(min_length=1, max_length=2048)
HEADERS: Final = Limit(max_length=50, max_bytes=16 * 1024)
HEADER_NAME: Final = Limit(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)
BODY: Final = Limit(max_bytes=256 * 1024)
CRON_EXPRESSION: Final = Limit(min_length=1, max_length=MAX_CRON_EXPRESSION_CHARS)
TIMEOUT_MS: Final = Limit(minimum=100, maximum=300_000, zero="default", default=30_000)
INTERVAL_MS: Final = Limit(minimum=1, maximum=MAX_INTERVAL_MS, floor=True)
TTL_MINUTES: Final = Limit(minimum=1, maximum=7 * 24 * 60, default=60)
PAGE_SIZE: Final = Limit(minimum=1, maximum=100, zero="default", default=50)
RUN_LIMIT: Final = Limit(minimum=1, maximum=500, zero="default", default=50)
RUN_OFFSET: Final = Limit(minimum=0, maximum=2**31 - 1)
WINDOW_HOURS: Final = Limit(minimum=1, maximum=720, zero="default", default=24)
# Endpoint policies (pacer_common.policies): rules per endpoint, and each rule's name, condition, actions and cooldown.
POLICY_NAME_PATTERN: Final = r"^[a-z0-9_-]+$"
POLICIES: Final = Limit(max_length=10)
POLICY_NAME: Final = Limit(min_length=1, max_length=64, pattern=POLICY_NAME_PATTERN)
POLICY_WHEN: Final = Limit(min_length=1, max_length=1000)
POLICY_THEN: Final = Limit(min_length=1, max_length=5)
POLICY_COOLDOWN_MS: Final = Limit(minimum=0, maximum=7 * 24 * 3600 * 1000)
POLICY_HINT_TTL_MS: Final = Limit(minimum=60_000, maximum=7 * 24 * 3600 * 1000, zero="default", default=3_600_000)
POLICY_ONE_SHOT_DELAY_MS: Final = Limit(minimum=0, maximum=24 * 3600 * 1000)
POLICY_PAUSE_FOR_MS: Final = Limit(minimum=1000, maximum=30 * 24 * 3600 * 1000, zero="no_bound")
# Jitter and request signing, as the front doors advertise them (the control plane checks them in validation).
JITTER_MS: Final = Limit(minimum=0, maximum=3600 * 1000)
SIGNING_SECRET: Final = Limit(min_length=32, max_length=256)
SIGNING_OVERLAP_MS: Final = Limit(minimum=0, maximum=7 * 24 * 3600 * 1000, default=24 * 3600 * 1000)
# Retries within a run (pacer_common.retries).
RETRY_MAX_ATTEMPTS: Final = Limit(minimum=1, maximum=5, zero="default", default=1)
RETRY_BACKOFF_MS: Final = Limit(minimum=100, maximum=60_000, zero="default", default=1000)

_API = "pacer.control.v1."
_REASONED = (
    "UpdateJobRequest",
    "ArchiveJobRequest",
    "AddEndpointToJobRequest",
    "UpdateEndpointConfigRequest",
    "DeleteEndpointRequest",
    "ApplyIntervalHintRequest",
    "ScheduleOneShotRunRequest",
    "PauseOrResumeEndpointRequest",
    "ClearAdaptiveHintsRequest",
    "ResetFailureCountRequest",
)


def _each(field: str, limit: Limit, *messages: str) -> dict[FieldKey, Limit]:
    return {(_API + message, field): limit for message in messages}


LIMITS: Final[Mapping[FieldKey, Limit]] = MappingProxyType(
    {
        **_each(
            "name",
            NAME,
            "CreateJobRequest",
            "UpdateJobRequest",
            "AddEndpointToJobRequest",
            "UpdateEndpointConfigRequest",
        ),
        **_each("description", DESCRIPTION, "CreateJobRequest", "UpdateJobRequest"),
        **_each("reason", REASON, *_REASONED),
        **_each("url", URL, "AddEndpointToJobRequest", "UpdateEndpointConfigRequest"),
        **_each("headers", HEADERS, "AddEndpointToJobRequest"),
        **_each("entries", HEADERS, "Headers"),
        **_each("key", HEADER_NAME, "AddEndpointToJobRequest.HeadersEntry", "Headers.EntriesEntry"),
        **_each("body", BODY, "AddEndpointToJobRequest", "UpdateEndpointConfigRequest"),
        **_each("timeout_ms", TIMEOUT_MS, "AddEndpointToJobRequest", "UpdateEndpointConfigRequest"),
        **_each("expression", CRON_EXPRESSION, "CronSchedule"),
        **_each("interval_ms", replace(INTERVAL_MS, zero="unset"), "Baseline"),
        **_each("min_interval_ms", replace(INTERVAL_MS, zero="no_bound"), "Clamp"),
        **_each("max_interval_ms", replace(INTERVAL_MS, zero="no_bound"), "Clamp"),
        **_each("interval_ms", INTERVAL_MS, "ApplyIntervalHintRequest"),
        **_each("ttl_minutes", TTL_MINUTES, "ApplyIntervalHintRequest", "ScheduleOneShotRunRequest"),
        **_each("page_size", PAGE_SIZE, "ListJobsRequest"),
        **_each("limit", RUN_LIMIT, "ListRunsRequest"),
        **_each("offset", RUN_OFFSET, "ListRunsRequest"),
        **_each("window_hours", WINDOW_HOURS, "SummarizeEndpointHealthRequest"),
        **_each("max_attempts", RETRY_MAX_ATTEMPTS, "RetryPolicy"),
        **_each("backoff_ms", RETRY_BACKOFF_MS, "RetryPolicy"),
    }
)

# The policy fields' limits, keyed as LIMITS is. Enforced by the control plane (pacer_control.conditions); kept out of
# LIMITS until every front door advertises them (tests/unit/test_limits.py walks LIMITS against each front door).
POLICY_LIMITS: Final[Mapping[FieldKey, Limit]] = MappingProxyType(
    {
        **_each("policies", POLICIES, "AddEndpointToJobRequest"),
        **_each("rules", POLICIES, "Policies"),
        **_each("name", POLICY_NAME, "Policy"),
        **_each("when", POLICY_WHEN, "Policy"),
        **_each("then", POLICY_THEN, "Policy"),
        **_each("cooldown_ms", POLICY_COOLDOWN_MS, "Policy"),
        **_each("interval_ms", INTERVAL_MS, "PolicyIntervalHint"),
        **_each("ttl_ms", POLICY_HINT_TTL_MS, "PolicyIntervalHint"),
        **_each("delay_ms", POLICY_ONE_SHOT_DELAY_MS, "PolicyOneShot"),
        **_each("for_ms", POLICY_PAUSE_FOR_MS, "PolicyPause"),
    }
)


def limit_for(message: str, field: str) -> Limit | None:
    """The limit on `field` of the message named `message` (full proto name), None when it has none."""
    return LIMITS.get((message, field))


def schema_bounds(limit: Limit, floor_ms: int, *, omittable: bool, entries: bool = False) -> dict[str, object]:
    """The JSON Schema keywords that state `limit` (a map's when `entries`) where the interval floor is `floor_ms`.

    `omittable`: see `Limit.accepts_zero`. A byte limit is stated as a character limit of the same number, since a
    character takes at least one byte; a map's byte total has no keyword.
    """
    keywords: dict[str, object] = {}
    prefix = "Properties" if entries else "Length"
    if limit.min_length is not None:
        keywords["min" + prefix] = limit.min_length
    longest = limit.max_length if limit.max_length is not None or entries else limit.max_bytes
    if longest is not None:
        keywords["max" + prefix] = longest
    if limit.pattern is not None:
        keywords["pattern"] = limit.pattern
    lowest = limit.lowest(floor_ms)
    if lowest is not None:
        keywords["minimum"] = 0 if limit.accepts_zero(omittable) else lowest
    if limit.maximum is not None:
        keywords["maximum"] = limit.maximum
    return keywords
