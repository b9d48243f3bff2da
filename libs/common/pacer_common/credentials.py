"""Credentials on the wire: the shape of a bearer token and of a tenant API key, the service credential internal
RPCs carry (from PACER_SERVICE_TOKEN, or a file in the var folder), and the gate every internal server puts in
front of them (`ServiceGate`)."""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from pacer_common.errors import PermissionDenied, Unauthenticated

SERVICE_TOKEN_FILE = "service-token"
# RFC 6750 `b64token`, ASCII only (with IGNORECASE or str.isalnum(), letters such as U+212A Kelvin would pass).
# Anything else is no Pacer credential, and could not travel as gRPC metadata either.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
# API keys are 52 characters and service tokens about 47; a far longer token is neither.
MAX_TOKEN_CHARS = 256
# A tenant API key is `pk_<prefix>_<secret>`: the prefix finds its record, the secret proves it.
KEY_SCHEME = "pk"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40

Metadata = Sequence[tuple[str, str | bytes]]


def is_token_shaped(token: str) -> bool:
    """True for a string that could be a Pacer credential: `b64token` characters, at most MAX_TOKEN_CHARS."""
    return len(token) <= MAX_TOKEN_CHARS and _TOKEN.fullmatch(token) is not None


def token_of(authorization: str) -> str | None:
    """The token of an `authorization: Bearer <token>` value (scheme in any case), None when it is not one."""
    scheme, _, token = authorization.strip(" ").partition(" ")
    token = token.strip(" ")
    return token if scheme.lower() == "bearer" and is_token_shaped(token) else None


def key_prefix(token: str) -> str | None:
    """The public prefix of a well-formed tenant API key, else None (the token is no API key)."""
    scheme, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    return prefix


def bearer_token(metadata: Metadata | None) -> str:
    """The token of the call's `authorization` metadata; Unauthenticated when it is missing or not a token."""
    for name, value in metadata or ():
        if name.lower() == "authorization":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            token = token_of(text)
            if token is None:
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token
    raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <token>'")


def service_token(configured: str, var_dir: str, *, create: bool) -> str:
    """The configured token, else the one in `var_dir/service-token`, made there (mode 0600) when `create`."""
    if configured:
        return configured
    path = Path(var_dir) / SERVICE_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise FileNotFoundError(f"no service token: set PACER_SERVICE_TOKEN or start the control plane first ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"svc_{secrets.token_urlsafe(32)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def bearer(token: str) -> tuple[tuple[str, str]]:
    """gRPC call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


class ServiceGate:
    """Admits internal callers (schedulers at the control plane, executors at a scheduler) holding the service
    token. A tenant API key is a valid kind of credential that may not call internal RPCs: PermissionDenied, so its
    holder learns why; anything else is Unauthenticated."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, metadata: Metadata | None) -> None:
        """Return when the call's metadata carries the service token; raise otherwise (see the class)."""
        token = bearer_token(metadata)
        if self._token and hmac.compare_digest(token.encode(), self._token):
            return
        if key_prefix(token) is not None:
            raise PermissionDenied("tenant API keys cannot call internal RPCs")
        raise Unauthenticated("unknown service credential")
