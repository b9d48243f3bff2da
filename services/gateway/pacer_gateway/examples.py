"""An example request body per route that takes one, shown by the OpenAPI document (tools such as Swagger UI prefill
requests with it).

Without them a tool would make up a body from the schema: every field in both spellings, which the gateway refuses.
tests/unit/test_openapi.py holds each example to its operation's schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

_REASON = "error rate rising at checkout"

EXAMPLES: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "CreateJob": {"name": "Production Health Monitor", "description": "Checks behind the flash sale"},
        "UpdateJob": {"description": "Checks behind the summer sale", "reason": "new campaign"},
        "AddEndpointToJob": {
            "name": "check_error_rate",
            "url": "https://api.example.com/errors",
            "method": "GET",
            "headers": {"Accept": "application/json"},
            "baseline": {"intervalMs": 60000},
            "clamp": {"minIntervalMs": 10000},
            "timeoutMs": 5000,
        },
        "UpdateEndpointConfig": {
            "baseline": {"cron": {"expression": "*/5 9-17 * * MON-FRI", "timezone": "Europe/Berlin"}},
            "reason": "office hours only",
        },
        "ApplyIntervalHint": {"intervalMs": 15000, "ttlMinutes": 30, "reason": _REASON},
        # A time within the next 366 days: edit it before sending.
        "ScheduleOneShotRun": {"runAt": "2030-01-31T09:00:00Z", "ttlMinutes": 60, "reason": _REASON},
        "PauseOrResumeEndpoint": {"resume": True, "reason": "maintenance over"},
        "ResetFailureCount": {"reason": "target fixed"},
    }
)
