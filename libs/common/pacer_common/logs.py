"""Structured logs: one JSON object per line, with a stable `event` name and any `extra` fields.

Pacer's own lines never carry credentials (no header values, keys or tokens are passed to a logger). As a second
line of defence, every line is scrubbed of credentials that have a recognizable shape, whoever wrote them (a
library's message, a traceback): API keys, generated service tokens, bearer tokens and passwords inside URLs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
REDACTED = "[redacted]"
_CREDENTIALS = (
    (re.compile(r"pk_[A-Za-z0-9]{8}_[A-Za-z0-9]{40}"), f"pk_{REDACTED}"),  # an API key (see pacer_control.auth)
    (re.compile(r"svc_[A-Za-z0-9_-]{16,}"), f"svc_{REDACTED}"),  # a generated service token
    (re.compile(r"(?i)(bearer)(\s+|%20)[A-Za-z0-9._~+/=-]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"(://[^/\s:@\"']*):[^/\s@\"']*@"), rf"\1:{REDACTED}@"),  # user:password@host in a URL
)


def redact(text: str) -> str:
    """`text` with every credential of a recognizable shape replaced by a marker."""
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def first_line(error: BaseException) -> str:
    """`Kind: first line of the message`: what failed, without the pages some drivers append (SQL, hints)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time, level, logger, message, event and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str))


def configure_logging(level: str) -> None:
    """Send JSON lines at `level` (PACER_LOG_LEVEL) to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc's event-loop plumbing logs a line per call at DEBUG, which would drown our own debug events.
    logging.getLogger("grpc._cython.cygrpc").setLevel(max(logging.INFO, root.level))
