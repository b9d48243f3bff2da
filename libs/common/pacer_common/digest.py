"""A digest of an endpoint's headers and body: compared instead of the values, which may hold credentials."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def config_digest(headers: Mapping[str, str], body: str) -> str:
    """Hex SHA-256 of the JSON `[[[name, value], ...] sorted by name, body]` written without spaces."""
    canonical = json.dumps([sorted([name, value] for name, value in headers.items()), body], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
