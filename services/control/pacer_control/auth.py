"""API keys: made at random, shown once, stored as a SHA-256 hash behind a short public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pacer_common.credentials import KEY_SCHEME, PREFIX_LENGTH, SECRET_LENGTH, bearer_token, key_prefix
from pacer_common.errors import Unauthenticated
from pacer_common.ids import new_id
from pacer_control.catalog import Catalog
from pacer_control.models import ApiKey

_ALPHABET = string.ascii_letters + string.digits
# How long a key found live is trusted without asking the database again: a revoked key stops working within this
# (the promise is a second) in every control plane, and the database sees about one key query per key and period.
KEY_TTL_S = 0.5
MAX_KNOWN_KEYS = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant an API key belongs to."""

    tenant_id: str
    key_prefix: str
    # The key's label, "" when it has none.
    key_label: str = ""

    @property
    def actor(self) -> str:
        """Who the audit trail names: the key's label, or its prefix when it has none."""
        return f"key:{self.key_label or self.key_prefix}"


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


@dataclass(frozen=True)
class _Known:
    """A live key as found in the database, and until when (monotonic seconds) it may be trusted without looking."""

    tenant_id: str
    key_hash: str
    label: str
    until_s: float


class Authenticator:
    """Resolves a bearer API key to its tenant, remembering live keys for `ttl_s` so most calls need no query.

    A revocation takes effect within `ttl_s` (KEY_TTL_S, under the promised second) in every control plane, and at
    once in this one when it goes through this process's catalog (`Catalog.on_key_revoked`). Only live keys are
    remembered, each for at most `ttl_s` and at most MAX_KNOWN_KEYS of them, so a stream of made-up keys costs a
    query each and no memory.
    """

    def __init__(
        self, catalog: Catalog, ttl_s: float = KEY_TTL_S, monotonic_s: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._monotonic_s = monotonic_s
        self._known: dict[str, _Known] = {}
        catalog.on_key_revoked(self.forget)

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        token = bearer_token(metadata)
        prefix = key_prefix(token)
        if prefix is None:
            raise Unauthenticated("unknown or revoked API key")
        known = self._known.get(prefix)
        if known is None or known.until_s <= self._monotonic_s():
            known = self._look_up(prefix)
        if known is None or not hmac.compare_digest(known.key_hash, hash_key(token)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(tenant_id=known.tenant_id, key_prefix=prefix, key_label=known.label)

    def forget(self, prefix: str) -> None:
        """Drop what is remembered of the key with this prefix (it was revoked)."""
        self._known.pop(prefix, None)

    def _look_up(self, prefix: str) -> _Known | None:
        record = self._catalog.find_api_key(prefix)
        if record is None or record.revoked_at is not None:
            self.forget(prefix)
            return None
        known = _Known(record.tenant_id, record.key_hash, record.label, self._monotonic_s() + self._ttl_s)
        if len(self._known) >= MAX_KNOWN_KEYS:
            self._known.clear()  # only keys used within the last ttl_s are worth keeping: they come back at once
        self._known[prefix] = known
        return known
