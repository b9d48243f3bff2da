"""The JSON log formatter: one object per line, extra fields kept, credentials of known shapes scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from pacer_common.logs import JsonFormatter, first_line, redact

API_KEY = "pk_AbCd1234_" + "x" * 40
SERVICE_TOKEN = "svc_Zm9vYmFyYmF6cXV4LXF1dXgtY29yZ2UtZ3JhdWx0"


def formatted(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "pacer.test", **extra})
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_is_json_with_the_event_and_extra_fields() -> None:
    line = formatted("run finished", event="run.finished", run_id="run_1", tenant="tn_1")
    assert (line["message"], line["event"], line["run_id"], line["tenant"], line["level"]) == (
        "run finished",
        "run.finished",
        "run_1",
        "tn_1",
        "info",
    )


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"unknown key {API_KEY} refused", API_KEY),
        (f"metadata: [('authorization', 'Bearer {SERVICE_TOKEN}')]", SERVICE_TOKEN),
        ("Authorization: Bearer target-secret-XYZ", "target-secret-XYZ"),
        ("GET /x?auth=Bearer%20abc.def-ghi HTTP/1.1", "abc.def-ghi"),
        ("cannot reach postgresql://pacer:hunter2@db:5432/pacer", "hunter2"),
    ],
)
def test_credentials_of_known_shapes_are_scrubbed_from_every_line(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)
    assert secret not in json.dumps(formatted("failed", error=text))


def test_ordinary_text_is_left_alone() -> None:
    text = "authorization metadata must be 'Bearer <api key>'; see https://example.com/docs?page=2"
    assert redact(text) == text


def test_first_line_names_the_error_without_the_detail_drivers_append() -> None:
    error = RuntimeError("connection refused\n[SQL: SELECT 1]\n(Background on this error at: ...)")
    assert first_line(error) == "RuntimeError: connection refused"
    assert first_line(ValueError()) == "ValueError"
