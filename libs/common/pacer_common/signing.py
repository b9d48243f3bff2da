"""Signed requests: the `X-Pacer-Signature` header a target checks to know a request came from Pacer.

The header reads `t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]`. Each `v1` signs the bytes `"<t>.<run id>."`
followed by the request body with one of the endpoint's secrets, newest first: while a rotated-out secret still
signs, a target holding either secret accepts the request. `docs/signing.md` shows how a target verifies it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

SIGNATURE_HEADER: Final = "X-Pacer-Signature"
MIN_SECRET_CHARS: Final = 32
MAX_SECRET_CHARS: Final = 256
DEFAULT_OVERLAP_MS: Final = 86_400_000
MAX_OVERLAP_MS: Final = 604_800_000


def signature(secret: str, timestamp_s: int, run_id: str, body: bytes) -> str:
    """Hex HMAC-SHA256 under `secret` of `"<timestamp_s>.<run_id>."` + `body`."""
    message = f"{timestamp_s}.{run_id}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header_value(secrets: Sequence[str], timestamp_s: int, run_id: str, body: bytes) -> str:
    """The `X-Pacer-Signature` value: the time, then one `v1=` per secret in the order given (newest first)."""
    return ",".join([f"t={timestamp_s}", *(f"v1={signature(s, timestamp_s, run_id, body)}" for s in secrets)])


def secret_problem(secret: str) -> str | None:
    """Why `secret` cannot sign (None when it can): MIN_SECRET_CHARS to MAX_SECRET_CHARS visible ASCII characters."""
    if not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS:
        return f"must be between {MIN_SECRET_CHARS} and {MAX_SECRET_CHARS} characters"
    if not all("!" <= char <= "~" for char in secret):
        return "must be printable ASCII without spaces"
    return None
