"""pacer-admin: run migrations, create tenants, create and revoke API keys (a new key is shown once), rotate the
key that seals endpoint secrets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from pacer_common.clock import SystemClock
from pacer_common.settings import load
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine, migrate
from pacer_control.sealing import SecretsError, add_primary_key, generate_key, key_file_of, settings_keyring
from pacer_control.settings import ControlSettings
from pacer_control.tenancy import TenantExists, create_tenant


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacer-admin", description=__doc__)
    parser.add_argument("--database-url", help="database URL (default: PACER_DATABASE_URL or the embedded SQLite)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database schema up to date")
    tenant = commands.add_parser("create-tenant", help="create a tenant and print its id")
    tenant.add_argument("name")
    key = commands.add_parser("create-key", help="create an API key for a tenant; the key is printed once")
    key.add_argument("tenant", help="tenant name")
    key.add_argument("--label", default="", help="what the key is for")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its prefix (the 8 characters after 'pk_')")
    revoke.add_argument("prefix")
    keys = commands.add_parser("list-keys", help="list a tenant's keys (prefixes only)")
    keys.add_argument("tenant", help="tenant name")
    quota = commands.add_parser("set-quota", help="set a tenant's limits ('default' returns one to the default)")
    quota.add_argument("tenant", help="tenant name")
    for name, kind in QUOTA_OPTIONS.items():
        quota.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_quota_value(kind))
    show = commands.add_parser("show-quota", help="show a tenant's own limits (unset ones use the defaults)")
    show.add_argument("tenant", help="tenant name")
    rotate = commands.add_parser(
        "rotate-secrets-key",
        help="put a new key first in the key file, then seal every endpoint's secrets again under it",
    )
    rotate.add_argument(
        "--reseal-only",
        action="store_true",
        help="keep the keys as configured (a new one already put first) and only seal everything again",
    )
    commands.add_parser("new-secrets-key", help="print a new secrets key line, for PACER_SECRETS_KEYS or a Secret")
    return parser


QUOTA_OPTIONS: dict[str, type] = {
    "max_jobs": int,
    "max_endpoints": int,
    "min_interval_ms": int,
    "rate_per_s": float,
    "burst": int,
    "run_retention_days": int,
}


def _quota_value(kind: type) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if text == "default":
            return RESET
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    return parse


RESET = object()


def run(argv: Sequence[str] | None = None, settings: ControlSettings | None = None) -> int:
    """Run one pacer-admin command line with `settings` (default: read from the environment); the exit status."""
    args = _parser().parse_args(argv)
    settings = settings or load(ControlSettings)
    if args.command == "new-secrets-key":
        print(generate_key().line())
        return 0
    try:
        if args.command == "rotate-secrets-key" and not args.reseal_only:
            print(f"new key {_add_key(settings)} put first in the key file", file=sys.stderr)
        keyring = settings_keyring(settings)
    except SecretsError as error:
        print(f"pacer-admin: {error}", file=sys.stderr)
        return 1
    engine = make_engine(args.database_url or settings.database_url)
    try:  # every exit disposes of the engine: a pooled connection left to the garbage collector warns
        migrate(engine, keyring=keyring)
        return _command(Catalog(engine, keyring), args, SystemClock().now())
    finally:
        engine.dispose()


def _command(catalog: Catalog, args: argparse.Namespace, now: datetime) -> int:
    """Run one database command; its exit status."""
    match args.command:
        case "migrate":
            print("schema is up to date")
        case "create-tenant":
            try:
                print(create_tenant(catalog, args.name, now))
            except TenantExists:
                print(f"tenant {args.name!r} already exists", file=sys.stderr)
                return 1
        case "create-key":
            tenant = catalog.find_tenant(args.tenant)
            if tenant is None:
                print(f"no tenant named {args.tenant!r}", file=sys.stderr)
                return 1
            issued = issue_key(catalog, tenant.id, args.label, now)
            print(issued.secret)
            print("store this key now: it is not shown again", file=sys.stderr)
        case "revoke-key":
            if not catalog.revoke_api_key(args.prefix, now):
                print(f"no live key with prefix {args.prefix!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.prefix}")
        case "set-quota" | "show-quota":
            return _quota_command(catalog, args, now)
        case "rotate-secrets-key":
            _reseal(catalog)
        case "list-keys":
            tenant = catalog.find_tenant(args.tenant)
            if tenant is None:
                print(f"no tenant named {args.tenant!r}", file=sys.stderr)
                return 1
            for key in catalog.list_api_keys(tenant.id):
                state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "live"
                print(f"pk_{key.prefix}_…  {state}  created {key.created_at.isoformat()}  {key.label}")
    return 0


def _add_key(settings: ControlSettings) -> str:
    path = key_file_of(settings)
    if settings.secrets_keys.strip() or path is None:
        raise SecretsError(
            "the keys come from PACER_SECRETS_KEYS: put a key from `pacer-admin new-secrets-key` first there, "
            "restart the control planes, then run `pacer-admin rotate-secrets-key --reseal-only`"
        )
    return add_primary_key(path).key_id


def _reseal(catalog: Catalog) -> None:
    before = catalog.reseal_secrets()
    primary = catalog.keyring.primary_id
    moved = sum(count for key_id, count in before.items() if key_id != primary)
    print(f"sealed {moved} endpoints again under key {primary}; {sum(before.values())} endpoints hold secrets")
    print("keep the old keys until every control plane has restarted with the new one first", file=sys.stderr)


def _quota_command(catalog: Catalog, args: argparse.Namespace, now: datetime) -> int:
    tenant = catalog.find_tenant(args.tenant)
    if tenant is None:
        print(f"no tenant named {args.tenant!r}", file=sys.stderr)
        return 1
    if args.command == "set-quota":
        given = {name: getattr(args, name) for name in QUOTA_OPTIONS if getattr(args, name) is not None}
        catalog.set_tenant_quota(tenant.id, {k: None if v is RESET else v for k, v in given.items()}, now)
    own = catalog.tenant_quota(tenant.id) or {}
    for name in QUOTA_OPTIONS:
        value = own.get(name)
        print(f"{name:<16} {'default' if value is None else value}")
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
