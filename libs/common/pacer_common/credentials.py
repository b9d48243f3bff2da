"""The service credential internal RPCs carry: from PACER_SERVICE_TOKEN, or a file in the var folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SERVICE_TOKEN_FILE = "service-token"


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
