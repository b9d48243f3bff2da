"""The request signature: a known vector (computed apart, with `openssl dgst -sha256 -hmac`), the header's shape, and
which secrets may sign."""

from __future__ import annotations

import hmac

import pytest

from pacer_common import signing

SECRET = "whsec_0123456789abcdef0123456789abcdef"
PREVIOUS = "whsec_previous_secret_fedcba9876543210"
# printf '%s' '1700000000.run_01HZX.{"a":1}' | openssl dgst -sha256 -hmac "$SECRET"
KNOWN = "6fada423171373653d5c929602c4e1a604f369200ddada2e93488e79ce70939c"
KNOWN_PREVIOUS = "1c5c71c0211dea648e840f4cbb7b5d641cde45999d93a0afed6fd1b62de6c3ac"
KNOWN_EMPTY_BODY = "888362a6b102d48d3abed4aecf25ff7061db6f2385407125e2966686f7df7a81"


def test_the_signature_matches_the_known_vector() -> None:
    assert signing.signature(SECRET, 1_700_000_000, "run_01HZX", b'{"a":1}') == KNOWN
    assert signing.signature(SECRET, 1_700_000_000, "run_01HZX", b"") == KNOWN_EMPTY_BODY


def test_the_header_carries_the_time_then_one_v1_per_secret_newest_first() -> None:
    value = signing.header_value([SECRET, PREVIOUS], 1_700_000_000, "run_01HZX", b'{"a":1}')
    assert value == f"t=1700000000,v1={KNOWN},v1={KNOWN_PREVIOUS}"
    assert signing.header_value([SECRET], 1_700_000_000, "run_01HZX", b'{"a":1}') == f"t=1700000000,v1={KNOWN}"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"timestamp_s": 1_700_000_001}, "time"),
        ({"run_id": "run_01HZY"}, "run id"),
        ({"body": b'{"a":2}'}, "body"),
        ({"secret": PREVIOUS}, "secret"),
    ],
)
def test_any_change_breaks_the_signature(change: dict[str, object], why: str) -> None:
    args: dict[str, object] = {
        "secret": SECRET,
        "timestamp_s": 1_700_000_000,
        "run_id": "run_01HZX",
        "body": b'{"a":1}',
    }
    args.update(change)
    assert not hmac.compare_digest(signing.signature(**args), KNOWN), why  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (SECRET, None),
        ("x" * 32, None),
        ("x" * 256, None),
        ("x" * 31, "must be between 32 and 256 characters"),
        ("x" * 257, "must be between 32 and 256 characters"),
        ("x" * 31 + " ", "must be printable ASCII without spaces"),
        ("é" * 40, "must be printable ASCII without spaces"),
    ],
)
def test_a_secret_must_be_long_enough_to_sign(secret: str, problem: str | None) -> None:
    assert signing.secret_problem(secret) == problem
