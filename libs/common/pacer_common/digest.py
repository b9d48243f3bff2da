"""A digest of an endpoint's secrets and body: compared instead of the values, which may hold credentials."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def config_digest(headers: Mapping[str, str], body: str, url_password: str | None = None) -> str:
    """Hex SHA-256 of the JSON `[[[name, value], ...] sorted by name, body]` written without spaces, with the URL's
    password as a third element when the URL has one (so the digest of an endpoint without one is unchanged)."""
    parts: list[object] = [sorted([name, value] for name, value in headers.items()), body]
    if url_password is not None:
        parts.append(url_password)
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
