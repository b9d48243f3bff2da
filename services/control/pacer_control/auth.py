"""API keys: made at random, shown once, stored as a SHA-256 hash behind a short public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pacer_common.credentials import bearer_token
from pacer_common.errors import PermissionDenied, Unauthenticated
from pacer_common.ids import new_id
from pacer_control.catalog import Catalog
from pacer_control.models import ApiKey

KEY_SCHEME = "pk"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
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


def split_key(key: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    return prefix


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
        prefix = split_key(token)
        record = self._catalog.find_api_key(prefix) if prefix else None
        if record is None or record.revoked_at is not None or not hmac.compare_digest(record.key_hash, hash_key(token)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(tenant_id=record.tenant_id, key_prefix=record.prefix)


class ServiceAuthenticator:
    """Admits internal callers (schedulers) holding the service token; tenant keys are refused."""

    def __init__(self, token: str) -> None:
        self._token = token

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> None:
        token = bearer_token(metadata)
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return
        if split_key(token) is not None:
            raise PermissionDenied("tenant API keys cannot call internal RPCs")
        raise Unauthenticated("unknown service credential")
