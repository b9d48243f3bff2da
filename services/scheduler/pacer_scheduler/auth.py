"""Who may open an executor stream: holders of the service token; tenant API keys are refused outright."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pacer_common.credentials import bearer_token
from pacer_common.errors import PermissionDenied, Unauthenticated

TENANT_KEY_SCHEME = "pk_"

Metadata = Sequence[tuple[str, str | bytes]]


class ServiceGate:
    """Admits callers whose bearer token is the service token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, metadata: Metadata | None) -> None:
        """Return when the metadata carries the service token.

        Raises PermissionDenied for a tenant API key (`pk_...`): a valid kind of credential that may not call
        internal RPCs; Unauthenticated for anything else.
        """
        token = bearer_token(metadata)
        if self._token and hmac.compare_digest(token.encode(), self._token):
            return
        if token.startswith(TENANT_KEY_SCHEME):
            raise PermissionDenied("tenant API keys cannot call internal RPCs")
        raise Unauthenticated("unknown service credential")
