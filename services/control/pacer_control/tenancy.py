"""Tenants and their keys, for the admin CLI and the embedded dev bootstrap."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pacer_common.credentials import bearer
from pacer_common.ids import new_tenant_id
from pacer_control.auth import Authenticator, IssuedKey, issue_key
from pacer_control.catalog import Catalog
from pacer_control.models import Tenant

DEV_TENANT = "dev"
DEV_KEY_FILE = "dev-api-key"


class TenantExists(Exception):
    """A tenant with that name already exists."""


def create_tenant(catalog: Catalog, name: str, now: datetime) -> str:
    """Create a tenant named `name` and return its id."""
    if catalog.find_tenant(name) is not None:
        raise TenantExists(name)
    tenant_id = new_tenant_id()
    catalog.create_tenant(Tenant(id=tenant_id, name=name, created_at=now))
    return tenant_id


def _key_still_valid(catalog: Catalog, path: Path) -> bool:
    try:
        Authenticator(catalog).authenticate(bearer(path.read_text().strip()))
    except Exception:  # noqa: BLE001 - any failure means the file no longer holds a usable key
        return False
    return True


def ensure_dev_key(catalog: Catalog, var_dir: Path, now: datetime) -> Path:
    """Make sure the `dev` tenant exists and `var/dev-api-key` (mode 0600) holds one of its live keys."""
    path = var_dir / DEV_KEY_FILE
    if path.exists() and _key_still_valid(catalog, path):
        return path
    tenant = catalog.find_tenant(DEV_TENANT)
    tenant_id = tenant.id if tenant is not None else create_tenant(catalog, DEV_TENANT, now)
    issued: IssuedKey = issue_key(catalog, tenant_id, "embedded dev key", now)
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(issued.secret + "\n")
    path.chmod(0o600)
    return path
