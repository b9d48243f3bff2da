"""API keys: made at random, shown once, stored as a SHA-256 hash behind a short public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pacer_common.credentials import KEY_SCHEME, PREFIX_LENGTH, SECRET_LENGTH, bearer_token, key_prefix
from pacer_common.errors import Unauthenticated
from pacer_common.ids import new_id
from pacer_control.catalog import Catalog
from pacer_control.models import ApiKey

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant an API key belongs to."""

    tenant_id: str
    key_prefix: str


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `secret` is the whole key, shown to its owner once and never stored."""

    key_id: str
    prefix: str
    secret: str


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hash_key(key: str) -> str:
    # Keys carry 238 bits of randomness, so a fast hash is as safe as a slow one and keeps auth cheap.
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(catalog: Catalog, tenant_id: str, label: str, now: datetime) -> IssuedKey:
    """Create and store a key for the tenant; the returned secret is the only copy."""
    prefix = _random(PREFIX_LENGTH)
    secret = f"{KEY_SCHEME}_{prefix}_{_random(SECRET_LENGTH)}"
    key_id = new_id("key")
    catalog.add_api_key(
        ApiKey(id=key_id, tenant_id=tenant_id, prefix=prefix, key_hash=hash_key(secret), label=label, created_at=now)
    )
    return IssuedKey(key_id, prefix, secret)


class Authenticator:
    """Resolves a bearer API key to its tenant."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        token = bearer_token(metadata)
        prefix = key_prefix(token)
        record = self._catalog.find_api_key(prefix) if prefix else None
        if record is None or record.revoked_at is not None or not hmac.compare_digest(record.key_hash, hash_key(token)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(tenant_id=record.tenant_id, key_prefix=record.prefix)
