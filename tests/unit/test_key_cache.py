"""The control plane's check of API keys without a database: a live key is looked up once per TTL, a revoked one is
refused once the TTL has passed (or at once when this process revoked it), made-up keys are never remembered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from pacer_common.credentials import bearer
from pacer_common.errors import Unauthenticated
from pacer_control.auth import KEY_TTL_S, Authenticator, hash_key
from pacer_control.models import ApiKey

KEY = "pk_abcdefgh_" + "s" * 40
OTHER = "pk_zyxwvuts_" + "t" * 40
NOW = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass
class FakeCatalog:
    """The catalog's key lookups, counted."""

    keys: dict[str, ApiKey] = field(default_factory=dict)
    lookups: int = 0
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def find_api_key(self, prefix: str) -> ApiKey | None:
        self.lookups += 1
        return self.keys.get(prefix)

    def on_key_revoked(self, listener: Callable[[str], None]) -> None:
        self.listeners.append(listener)

    def revoke(self, prefix: str, *, here: bool) -> None:
        self.keys[prefix].revoked_at = NOW
        if here:
            for listener in self.listeners:
                listener(prefix)


@dataclass
class Ticker:
    now_s: float = 100.0

    def __call__(self) -> float:
        return self.now_s


def catalog_with(*keys: str) -> FakeCatalog:
    catalog = FakeCatalog()
    for key in keys:
        prefix = key.split("_")[1]
        catalog.keys[prefix] = ApiKey(id=f"key_{prefix}", tenant_id="tn_a", prefix=prefix, key_hash=hash_key(key))
    return catalog


def checker(catalog: FakeCatalog, ticker: Ticker) -> Authenticator:
    return Authenticator(catalog, monotonic_s=ticker)  # type: ignore[arg-type]


def test_a_live_key_is_looked_up_once_per_ttl() -> None:
    catalog, ticker = catalog_with(KEY), Ticker()
    auth = checker(catalog, ticker)
    for _ in range(5):
        assert auth.authenticate(bearer(KEY)).tenant_id == "tn_a"
    assert catalog.lookups == 1
    ticker.now_s += KEY_TTL_S
    auth.authenticate(bearer(KEY))
    assert catalog.lookups == 2


def test_a_key_revoked_elsewhere_is_refused_once_the_ttl_has_passed() -> None:
    assert KEY_TTL_S < 1.0  # the promise: a revoked key stops working within a second
    catalog, ticker = catalog_with(KEY), Ticker()
    auth = checker(catalog, ticker)
    auth.authenticate(bearer(KEY))
    catalog.revoke("abcdefgh", here=False)
    ticker.now_s += KEY_TTL_S
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(KEY))


def test_a_key_revoked_through_this_catalog_is_refused_at_once() -> None:
    catalog, ticker = catalog_with(KEY), Ticker()
    auth = checker(catalog, ticker)
    auth.authenticate(bearer(KEY))
    catalog.revoke("abcdefgh", here=True)
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(KEY))


def test_a_wrong_secret_behind_a_remembered_prefix_is_refused() -> None:
    catalog = catalog_with(KEY)
    auth = checker(catalog, Ticker())
    auth.authenticate(bearer(KEY))
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(KEY[:-1] + "x"))


def test_unknown_and_malformed_keys_are_looked_up_each_time_and_never_remembered() -> None:
    catalog = catalog_with(KEY)
    auth = checker(catalog, Ticker())
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer(OTHER))
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer("not-a-key"))
    assert catalog.lookups == 3  # the made-up key each time; the malformed one never reaches the database
    assert auth.authenticate(bearer(KEY)).tenant_id == "tn_a"
