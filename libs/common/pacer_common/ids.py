"""Typed, prefixed identifiers: readable in logs, hard to guess, sortable by creation."""

from __future__ import annotations

import secrets
import time
from typing import NewType

TenantId = NewType("TenantId", str)
JobId = NewType("JobId", str)
EndpointId = NewType("EndpointId", str)
RunId = NewType("RunId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_ID_LENGTH = 26  # 10 time characters + 16 random ones (80 bits)


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A fresh id such as `job_01jd…`: millisecond time first, so ids sort by creation."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def looks_like(prefix: str, value: str) -> bool:
    """True when `value` has the shape of an id made by `new_id(prefix)`."""
    head, _, body = value.partition("_")
    return head == prefix and len(body) == _ID_LENGTH and all(c in _ALPHABET for c in body)


def new_job_id() -> JobId:
    return JobId(new_id("job"))


def new_endpoint_id() -> EndpointId:
    return EndpointId(new_id("ep"))


def new_run_id() -> RunId:
    return RunId(new_id("run"))


def new_tenant_id() -> TenantId:
    return TenantId(new_id("tn"))
