"""The OpenAPI document says what the control plane accepts: the patterns the gateway writes for its rules accept only
what `pacer_control.validation` accepts, the request schemas take and refuse what the control plane does, and every
example body fits its schema. (Against a live control plane: tests/integration/test_rest_schemathesis.py.)"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer_control.validation import Checks
from pacer_gateway.constraints import NOT_BLANK, URL_PATTERN, decimal_pattern, numerals
from pacer_gateway.openapi import build_document
from pacer_gateway.routes import ROUTES

FLOOR_MS = 1000
DOCUMENT = build_document(floor_ms=FLOOR_MS)


def body_schema(rpc: str) -> Any:
    """A validator of the operation's request body. jsonschema_rs reads `pattern` as ECMA 262 does, as the document
    means it; Python's `re.search` would let `$` match before a final line break."""
    route = next(r for r in ROUTES if r.rpc == rpc)
    schema = DOCUMENT["paths"][route.path][route.method.lower()]["requestBody"]["content"]["application/json"]
    return jsonschema_rs.validator_for({**schema["schema"], "components": DOCUMENT["components"]})


@given(st.integers(1, 10**12), st.integers(0, 10**12), st.integers(0, 2 * 10**12))
def test_numerals_match_exactly_the_numbers_in_range(low: int, span: int, number: int) -> None:
    high = low + span
    pattern = re.compile(numerals(low, high))
    for candidate in (number, low, high, low - 1, high + 1):
        assert bool(pattern.fullmatch(str(candidate))) == (low <= candidate <= high), (low, high, candidate)


def test_decimal_patterns_read_zero_and_leading_zeros_as_the_gateway_does() -> None:
    timeout = re.compile(decimal_pattern(100, 300_000, zero=True))
    assert [bool(timeout.fullmatch(t)) for t in ("0", "-0", "000", "0100", "300000", "99", "300001", "-5")] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert not re.fullmatch(decimal_pattern(1000, 5000, zero=False), "0")


def _refused(check: str, value: str) -> list[str]:
    checks = Checks()
    getattr(checks, check)(value)
    return [violation.description for violation in checks.found]


@given(st.from_regex(URL_PATTERN, fullmatch=True).filter(lambda url: len(url) <= 2048))
def test_every_url_the_pattern_takes_is_one_the_control_plane_takes(url: str) -> None:
    assert _refused("url", url) == []


@given(st.from_regex(NOT_BLANK, fullmatch=True).filter(lambda name: len(name) <= 200))
def test_every_name_the_pattern_takes_is_one_the_control_plane_takes(name: str) -> None:
    assert _refused("name", name) == []


@given(st.text(min_size=1, max_size=30))
def test_a_name_of_spaces_is_refused_by_both(name: str) -> None:
    assert bool(re.fullmatch(NOT_BLANK, name)) == (not _refused("name", name))


@given(st.dictionaries(st.from_regex(r"[A-Za-z-]{1,12}", fullmatch=True), st.text(max_size=20), max_size=5))
def test_headers_the_schema_takes_are_headers_the_control_plane_takes(headers: dict[str, str]) -> None:
    schema = body_schema("AddEndpointToJob")
    body = {"name": "n", "url": "https://example.com/", "baseline": {"intervalMs": FLOOR_MS}, "headers": headers}
    checks = Checks()
    checks.headers(headers)
    assert schema.is_valid(body) == (checks.found == [])


@pytest.mark.parametrize(
    ("rpc", "body", "valid"),
    [
        ("CreateJob", {}, False),
        ("CreateJob", {"name": " \t"}, False),
        ("CreateJob", {"name": None}, False),
        ("CreateJob", {"name": "n", "description": None}, True),
        ("UpdateJob", {}, True),
        ("UpdateJob", {"name": ""}, False),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}}, True),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 999}}, False),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"interval_ms": "0999"}}, False),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"interval_ms": "01000"}}, True),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {}}, False),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"cron": {"expression": "* * * * *"}}},
            True,
        ),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"cron": {}, "intervalMs": 0}}, False),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"cron": {"expression": "x"}, "intervalMs": 0}},
            True,
        ),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"cron": {"expression": "x"}, "intervalMs": 5000}},
            False,
        ),
        ("AddEndpointToJob", {"name": "n", "url": "ftp://h/", "baseline": {"intervalMs": 1000}}, False),
        ("AddEndpointToJob", {"name": "n", "url": "https://h:0/", "baseline": {"intervalMs": 1000}}, False),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "timeoutMs": 50},
            False,
        ),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "timeoutMs": 0},
            True,
        ),
        ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "method": ""}, True),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "method": "FETCH"},
            False,
        ),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "signingSecret": ""},
            True,
        ),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "signingSecret": "short"},
            False,
        ),
        (
            "AddEndpointToJob",
            {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "clamp": {"minIntervalMs": 10}},
            False,
        ),
        (
            "AddEndpointToJob",
            {
                "name": "n",
                "url": "https://h/",
                "baseline": {"intervalMs": 1000},
                "policies": [{"name": "r", "when": "true", "then": [{}]}],
            },
            False,
        ),
        (
            "AddEndpointToJob",
            {
                "name": "n",
                "url": "https://h/",
                "baseline": {"intervalMs": 1000},
                "policies": [{"name": "r", "when": "true", "then": [{"resume": {}}]}],
            },
            True,
        ),
        *(
            ("AddEndpointToJob", {"name": "n", "url": "https://h/", "baseline": {"intervalMs": 1000}, "headers": h}, ok)
            for h, ok in (
                ({"X-Team": "sre\tops"}, True),
                ({"tE": "v"}, False),
                ({"Proxy-Authorization": "v"}, False),
                ({"x-pacer-signature": "v"}, False),
                ({"X-Team": "a\nb"}, False),
            )
        ),
        ("ApplyIntervalHint", {"ttlMinutes": 5}, False),
        ("ScheduleOneShotRun", {"runAt": None}, False),
        ("PauseOrResumeEndpoint", {"resume": True, "pauseUntil": "2030-01-01T00:00:00Z"}, False),
        ("PauseOrResumeEndpoint", {"resume": False, "pauseUntil": "2030-01-01T00:00:00Z"}, True),
    ],
)
def test_request_schemas_take_and_refuse_what_the_control_plane_does(rpc: str, body: Any, valid: bool) -> None:
    assert body_schema(rpc).is_valid(body) == valid


def test_every_example_body_fits_its_schema() -> None:
    routes = [route for route in ROUTES if route.body]
    for route in routes:
        media = DOCUMENT["paths"][route.path][route.method.lower()]["requestBody"]["content"]["application/json"]
        assert "example" in media, route.rpc
        assert body_schema(route.rpc).is_valid(media["example"]), route.rpc
