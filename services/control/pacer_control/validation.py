"""Request validation: every check names the field at fault, and all faults are reported at once.

The numbers are the API's limits in `pacer_common.limits`, which every front door also advertises; the names below
stay for the modules that import them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pacer_common import limits, retries
from pacer_common.cron import CronError, validate_cron
from pacer_common.errors import FieldViolation, InvalidArgument, shown
from pacer_common.headers import is_forbidden, is_reserved
from pacer_common.limits import HTTP_METHODS as METHODS
from pacer_common.limits import MAX_INTERVAL_MS
from pacer_common.retries import RetryPolicy
from pacer_common.urls import split_password


def _declared(value: int | None) -> int:
    """A number the table must declare; a missing one is a programming error, found at import."""
    if value is None:
        raise ValueError("pacer_common.limits lacks a number pacer_control.validation needs")
    return value


MAX_NAME = _declared(limits.NAME.max_length)
MAX_DESCRIPTION = _declared(limits.DESCRIPTION.max_length)
MAX_REASON = _declared(limits.REASON.max_length)
MAX_URL = _declared(limits.URL.max_length)
MAX_HEADERS = _declared(limits.HEADERS.max_length)
MAX_HEADER_NAME = _declared(limits.HEADER_NAME.max_length)
MAX_HEADERS_BYTES = _declared(limits.HEADERS.max_bytes)
MAX_BODY_BYTES = _declared(limits.BODY.max_bytes)
MIN_TIMEOUT_MS = _declared(limits.TIMEOUT_MS.minimum)
MAX_TIMEOUT_MS = _declared(limits.TIMEOUT_MS.maximum)
DEFAULT_TIMEOUT_MS = _declared(limits.TIMEOUT_MS.default)
DEFAULT_TTL_MINUTES = _declared(limits.TTL_MINUTES.default)
MIN_TTL_MINUTES = _declared(limits.TTL_MINUTES.minimum)
MAX_TTL_MINUTES = _declared(limits.TTL_MINUTES.maximum)
MAX_ATTEMPTS = _declared(limits.RETRY_MAX_ATTEMPTS.maximum)
MIN_BACKOFF_MS = _declared(limits.RETRY_BACKOFF_MS.minimum)
MAX_BACKOFF_MS = _declared(limits.RETRY_BACKOFF_MS.maximum)
ONESHOT_PAST_TOLERANCE = timedelta(minutes=5)
ONESHOT_HORIZON = timedelta(days=366)
_TOKEN = re.compile(limits.HEADER_NAME_PATTERN)


def _is_control(char: str) -> bool:
    """C0 and C1 control characters and DEL (Unicode category Cc)."""
    return unicodedata.category(char) == "Cc"


@dataclass(frozen=True)
class BaselineInput:
    """A baseline as sent: at most one of the two should be set."""

    cron_expression: str | None = None
    cron_timezone: str = ""
    interval_ms: int | None = None


@dataclass(frozen=True)
class ClampInput:
    min_interval_ms: int = 0
    max_interval_ms: int = 0


class Checks:
    """Collects field violations; `done()` raises them together."""

    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.found.append(FieldViolation(field, description))

    def done(self) -> None:
        if self.found:
            raise InvalidArgument(self.found)

    def printable(self, value: str, field: str) -> bool:
        """False (and a violation) when `value` holds NUL, which no database column can store."""
        if "\x00" in value:
            self.fail(field, "must not contain NUL characters")
            return False
        return True

    def name(self, value: str, field: str = "name") -> None:
        if not self.printable(value, field):
            return
        if not value.strip():
            self.fail(field, "must not be empty")
        elif len(value) > MAX_NAME:
            self.fail(field, f"must be at most {MAX_NAME} characters")

    def text(self, value: str, field: str, limit: int) -> None:
        if not self.printable(value, field):
            return
        if len(value) > limit:
            self.fail(field, f"must be at most {limit} characters")

    def reason(self, value: str) -> None:
        self.text(value, "reason", MAX_REASON)

    def url(self, value: str, field: str = "url") -> None:
        if not self.printable(value, field):
            return
        if len(value) > MAX_URL or len(split_password(value)[0]) > MAX_URL:
            self.fail(field, f"must be at most {MAX_URL} characters")
            return
        if any(_is_control(c) or c.isspace() for c in value):
            self.fail(field, "must not contain spaces, line breaks or control characters (percent-encode them)")
            return
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            self.fail(field, "is not a valid URL (check the host and the port)")
            return
        if parts.scheme not in ("http", "https"):
            self.fail(field, "must be an absolute http:// or https:// URL")
        elif not parts.hostname:
            self.fail(field, "must name a host")
        elif port == 0:
            self.fail(field, "port must be between 1 and 65535")

    def method(self, value: str, field: str = "method") -> str:
        method = value.upper() or "GET"
        if method not in METHODS:
            self.fail(field, f"must be one of {', '.join(METHODS)}")
        return method

    def headers(self, headers: Mapping[str, str], field: str = "headers") -> None:
        """Names must be HTTP tokens a tenant may set (`pacer_common.headers`), values visible text."""
        if len(headers) > MAX_HEADERS:
            self.fail(field, f"must have at most {MAX_HEADERS} entries")
        bad = sorted(n for n in headers if len(n) > MAX_HEADER_NAME or not _TOKEN.match(n))
        if bad:
            self.fail(field, f"invalid header name {shown(bad[0], 40)}")
        for name, value in headers.items():
            if name in bad:
                continue
            if is_reserved(name):
                self.fail(f"{field}.{name}", "is set by Pacer itself (the request signature)")
            elif is_forbidden(name):
                self.fail(f"{field}.{name}", "frames or routes the request (framing, hop-by-hop or routing header)")
            elif any(_is_control(c) and c != "\t" for c in value):
                self.fail(f"{field}.{name}", "must not contain line breaks or control characters")
        size = sum(len(n.encode()) + len(v.encode()) for n, v in headers.items())
        if size > MAX_HEADERS_BYTES:
            self.fail(field, f"must be at most {MAX_HEADERS_BYTES} bytes in all")

    def body(self, value: str, field: str = "body") -> None:
        if not self.printable(value, field):
            return
        if len(value.encode()) > MAX_BODY_BYTES:
            self.fail(field, f"must be at most {MAX_BODY_BYTES} bytes")

    def timeout(self, value: int, field: str = "timeout_ms") -> int:
        if value == 0:
            return DEFAULT_TIMEOUT_MS
        if not MIN_TIMEOUT_MS <= value <= MAX_TIMEOUT_MS:
            self.fail(field, f"must be between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS} ms")
        return value

    def retry(self, sent: RetryPolicy, field: str = "retry") -> RetryPolicy:
        """The retry policy `sent` (zeros for defaults) as stored: 1 to MAX_ATTEMPTS attempts, a backoff in range."""
        if not 0 <= sent.max_attempts <= MAX_ATTEMPTS:
            self.fail(f"{field}.max_attempts", f"must be between 1 and {MAX_ATTEMPTS} (0 means 1: no retry)")
        if sent.backoff_ms and not MIN_BACKOFF_MS <= sent.backoff_ms <= MAX_BACKOFF_MS:
            self.fail(f"{field}.backoff_ms", f"must be between {MIN_BACKOFF_MS} and {MAX_BACKOFF_MS} ms (0 means 1000)")
        return retries.policy(sent.max_attempts, sent.backoff_ms)

    def interval(self, value: int, field: str, floor_ms: int) -> None:
        if value < floor_ms:
            self.fail(field, f"must be at least {floor_ms} ms")
        elif value > MAX_INTERVAL_MS:
            self.fail(field, f"must be at most {MAX_INTERVAL_MS} ms (366 days)")

    def baseline(self, baseline: BaselineInput | None, floor_ms: int, field: str = "baseline") -> None:
        has_cron = baseline is not None and baseline.cron_expression is not None
        has_interval = baseline is not None and baseline.interval_ms is not None
        if has_cron == has_interval:
            self.fail(field, "set exactly one of cron or interval_ms")
            return
        assert baseline is not None
        if baseline.interval_ms is not None:
            self.interval(baseline.interval_ms, f"{field}.interval_ms", floor_ms)
            return
        try:
            validate_cron(baseline.cron_expression or "", baseline.cron_timezone)
        except CronError as error:
            self.fail(f"{field}.cron.{error.field}", str(error))

    def clamp(self, clamp: ClampInput, floor_ms: int, field: str = "clamp") -> None:
        for name, value in (("min_interval_ms", clamp.min_interval_ms), ("max_interval_ms", clamp.max_interval_ms)):
            if value < 0:
                self.fail(f"{field}.{name}", "must not be negative (0 means no bound)")
            elif value:
                self.interval(value, f"{field}.{name}", floor_ms)
        if clamp.min_interval_ms > 0 and clamp.max_interval_ms > 0 and clamp.min_interval_ms > clamp.max_interval_ms:
            self.fail(field, "min_interval_ms must not exceed max_interval_ms")

    def ttl(self, value: int | None, field: str = "ttl_minutes") -> int:
        if value is None:
            return DEFAULT_TTL_MINUTES
        if not MIN_TTL_MINUTES <= value <= MAX_TTL_MINUTES:
            self.fail(field, f"must be between {MIN_TTL_MINUTES} and {MAX_TTL_MINUTES} minutes")
        return value

    def run_at(self, value: datetime | None, now: datetime, field: str = "run_at") -> None:
        if value is None:
            self.fail(field, "is required")
        elif value < now - ONESHOT_PAST_TOLERANCE:
            self.fail(field, "is more than 5 minutes in the past")
        elif value > now + ONESHOT_HORIZON:
            self.fail(field, "is more than 366 days ahead")

    def in_range(self, value: int, field: str, low: int, high: int) -> None:
        if not low <= value <= high:
            self.fail(field, f"must be between {low} and {high}")
