"""An endpoint's signing secrets over time: setting, rotating and stopping them, and which ones sign a claimed run.

The secrets are sealed with the endpoint's other secrets (`pacer_control.sealing`); the row says only whether the
endpoint signs (`signed`) and until when a rotated-out secret still signs (`previous_secret_expires_at`). The
signature itself is `pacer_common.signing`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pacer_common.signing import DEFAULT_OVERLAP_MS, MAX_OVERLAP_MS, secret_problem
from pacer_control.sealing import EndpointSecrets
from pacer_control.validation import Checks


@dataclass(frozen=True)
class Signing:
    """The endpoint's secrets after a change, and what its row then shows."""

    secrets: EndpointSecrets
    previous_expires_at: datetime | None

    @property
    def signed(self) -> bool:
        return self.secrets.signing_secret is not None


def check_secret(checks: Checks, secret: str | None, *, stopping_allowed: bool, field: str = "signing_secret") -> None:
    """A new secret must sign (`pacer_common.signing.secret_problem`); "" stops signing where `stopping_allowed`."""
    if secret is None or (secret == "" and stopping_allowed):
        return
    problem = secret_problem(secret)
    if problem is not None:
        checks.fail(field, problem)


def check_overlap(checks: Checks, overlap_ms: int | None, field: str = "signing_overlap_ms") -> None:
    if overlap_ms is not None:
        checks.in_range(overlap_ms, field, 0, MAX_OVERLAP_MS)


def first(secrets: EndpointSecrets, secret: str) -> Signing:
    """A new endpoint's signing: `secret` signs, or nothing does when it is empty."""
    return Signing(replace(secrets, signing_secret=secret or None, previous_signing_secret=None), None)


def rotate(
    secrets: EndpointSecrets,
    previous_expires_at: datetime | None,
    secret: str | None,
    overlap_ms: int | None,
    now: datetime,
) -> Signing:
    """Apply an UpdateEndpointConfig's `signing_secret` and `signing_overlap_ms` (None: not sent).

    A new secret signs from now on and the one it replaces keeps signing for the overlap (default 24 h; 0 drops it at
    once). An empty secret stops signing altogether. The same secret again changes nothing. An overlap sent alone
    moves the end of the current overlap to `now + overlap_ms`.
    """
    held = Signing(secrets, previous_expires_at if secrets.previous_signing_secret is not None else None)
    overlap = timedelta(milliseconds=DEFAULT_OVERLAP_MS if overlap_ms is None else overlap_ms)
    if secret is None:
        if overlap_ms is None or held.previous_expires_at is None:
            return held
        return _with_previous(secrets, secrets.previous_signing_secret, now, overlap)
    if secret == "":
        return Signing(replace(secrets, signing_secret=None, previous_signing_secret=None), None)
    if secret == secrets.signing_secret:
        return held
    return _with_previous(replace(secrets, signing_secret=secret), secrets.signing_secret, now, overlap)


def _with_previous(secrets: EndpointSecrets, previous: str | None, now: datetime, overlap: timedelta) -> Signing:
    """`secrets` with `previous` signing until `now + overlap`; without it when there is none or no overlap."""
    if previous is None or overlap <= timedelta(0):
        return Signing(replace(secrets, previous_signing_secret=None), None)
    return Signing(replace(secrets, previous_signing_secret=previous), now + overlap)


def signing_secrets(secrets: EndpointSecrets, previous_expires_at: datetime | None, now: datetime) -> tuple[str, ...]:
    """The secrets that sign a run claimed at `now`, newest first: the current one and a previous one still in its
    overlap."""
    found = [secrets.signing_secret] if secrets.signing_secret else []
    if secrets.previous_signing_secret and previous_expires_at is not None and now < previous_expires_at:
        found.append(secrets.previous_signing_secret)
    return tuple(found)
