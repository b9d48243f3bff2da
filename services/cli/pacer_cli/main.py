"""pacerctl's composition root: the parser, key and address resolution, error handling and exit codes.

`run(argv, stdout, stderr)` is the whole program without the process around it (tests call it in-process);
`main()` is the console script.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from pacer_cli import apply, audit, commands, completion, configure, render, watch
from pacer_cli.commands import Session, Subcommand, UsageError
from pacer_cli.contexts import ConfigError, Context, load_config
from pacer_cli.settings import CliSettings, environment, load_settings
from pacer_common.client import DEFAULT_ADDR, ApiError, ControlClient, api_key
from pacer_common.settings import ClientTls
from pacer_common.tls import client_tls_credentials

DESCRIPTION = """Pacer from the command line: every ControlService action, grouped by what it acts on, and
`apply -f FILE`, which creates or updates jobs and endpoints from a YAML file.

Output is an aligned table or key/value block for people; --json prints the API's response in the protobuf JSON
mapping (proto field names, int64 values as numbers) for programs. Times are UTC. Durations are written 500ms, 20s,
5m, 2h, 1d or 1h30m."""

EPILOG = f"""connection:
  key       --api-key, else $PACER_API_KEY, else the context's key-file, else the file var/dev-api-key
            (folder: $PACER_VAR_DIR)
  address   --addr, else $PACER_CONTROL_ADDR (or its older alias $PACER_ADDR), else the context's addr, else
            {DEFAULT_ADDR}
  context   --context, else the config file's current-context (`pacerctl config`; the file: $PACER_CONFIG, else
            $XDG_CONFIG_HOME/pacer/config.yaml, else ~/.config/pacer/config.yaml)

exit codes:
  0  success (and Ctrl-C in `runs watch`; `diff`: nothing differs)
  1  `diff`: the file and Pacer differ
  2  usage error, no API key, an invalid apply file, or the server refused the input (INVALID_ARGUMENT)
  3  not found (NOT_FOUND; another tenant's objects are not found too)
  4  failed precondition (FAILED_PRECONDITION: archived job, deleted endpoint; apply: a name used twice in Pacer)
  5  not authenticated or not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  6  rate limited or over quota (RESOURCE_EXHAUSTED; the retry-after is printed)
  7  control plane unavailable, or any other error
  130 interrupted (Ctrl-C)"""

GROUPS = (
    ("jobs", "create, show, list, update and archive jobs"),
    ("endpoints", "configure endpoints and steer their cadence (hints, one-shots, pause)"),
    ("runs", "run history: list, details, live tail"),
    ("audit", "the audit trail of a job or an endpoint: who, what, why, when"),
)
OUTPUTS = ("table", "wide", "json", "yaml")
# Groups that work on this machine alone: no key, no control plane.
LOCAL_GROUPS = ("config", "completion")
NO_KEY = (
    "error: no API key: pass --api-key, set PACER_API_KEY, or start Pacer with `make run`, "
    "which writes var/dev-api-key\n"
)


def exit_code(code: str) -> int:
    """The process exit code for a gRPC status code name (see the --help epilog)."""
    match code:
        case "INVALID_ARGUMENT":
            return 2
        case "NOT_FOUND":
            return 3
        case "FAILED_PRECONDITION":
            return 4
        case "UNAUTHENTICATED" | "PERMISSION_DENIED":
            return 5
        case "RESOURCE_EXHAUSTED":
            return 6
        case _:
            return 7


def _add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--addr, --api-key and --json; on subcommands they default to SUPPRESS so they never undo the top-level ones."""
    keep: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--addr", **keep, help=f"control plane address (default $PACER_CONTROL_ADDR or {DEFAULT_ADDR})")
    parser.add_argument("--context", **keep, help="the named context to use (default: the current context)")
    parser.add_argument("--api-key", **keep, help="API key (default $PACER_API_KEY or var/dev-api-key)")
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        **keep,
        help="table (default), wide (more columns), json or yaml (the API's mapping; errors as JSON too under json)",
    )
    parser.add_argument("--json", action="store_true", **keep, help="the same as -o json")


def _add_subcommand(
    parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, command: Subcommand
) -> None:
    leaf = parent.add_parser(
        name,
        help=command.help,
        description=command.help,
        epilog=f"example:\n  {command.example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(leaf)
    _add_connection_options(leaf, top=False)
    leaf.set_defaults(action=command.action)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: `pacerctl [options] GROUP COMMAND [arguments]`, and `pacerctl apply -f FILE`."""
    parser = argparse.ArgumentParser(
        prog="pacerctl", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"pacerctl {cli_version()}")
    _add_connection_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar="GROUP|apply|diff", required=True)
    nouns = {}
    for name, help_text in GROUPS:
        group = groups.add_parser(name, help=help_text, description=help_text)
        nouns[name] = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (*commands.all_commands(), watch.subcommand(), audit.subcommand()):
        _add_subcommand(nouns[command.group], command.name, command)
    _add_subcommand(groups, "apply", apply.subcommand())
    _add_subcommand(groups, "diff", apply.diff_subcommand())
    configure.add_parsers(groups)
    completion.add_parser(groups)
    return parser


def _parse(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when argparse ends the program (--help: 0, bad usage: 2)."""
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            return build_parser().parse_args(argv)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)


def _key(args: argparse.Namespace, settings: CliSettings, context: Context | None) -> str | None:
    if args.api_key:
        return str(args.api_key).strip()
    if not settings.api_key and context is not None and context.key_file:
        try:
            return context.key()
        except OSError as error:
            raise ConfigError(f"context {context.name!r}: cannot read its key-file: {error.strerror}") from None
    try:
        return api_key(settings.api_key, settings.var_dir)
    except OSError:
        return None  # an unreadable var/dev-api-key is reported like a missing one


def _context(args: argparse.Namespace, settings: CliSettings) -> Context | None:
    """The context this command uses: --context, else the config file's current one, else none."""
    config = load_config(settings.config_file)
    name = args.context or config.current
    return config.find(name) if name else None


def _tls(settings: CliSettings, context: Context | None) -> ClientTls:
    """The TLS files: each from its PACER_TLS_* variable, else from the context."""
    if context is None:
        return settings.tls
    return ClientTls(
        settings.tls.ca_file or context.ca_file,
        settings.tls.client_cert_file or context.client_cert_file,
        settings.tls.client_key_file or context.client_key_file,
    )


def cli_version() -> str:
    try:
        return version("pacer-cli")
    except PackageNotFoundError:
        return "unknown"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def run(
    argv: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    *,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> int:
    """Run one pacerctl command line and return its exit code; output goes to `stdout`, diagnostics to `stderr`.

    `environ` (default: the process environment) supplies the settings (`pacer_cli.settings`: PACER_CONTROL_ADDR,
    PACER_API_KEY, PACER_VAR_DIR, PACER_TLS_*) and the secrets an apply file names; `now` is the clock that relative
    times (`--in 5m`, `--for 1h`) count from.
    """
    args = _parse(argv, stdout, stderr)
    if isinstance(args, int):
        return args
    settings = load_settings(environ)
    if args.group in LOCAL_GROUPS:
        try:
            return int(args.local(args, settings, stdout, build_parser()))
        except ConfigError as error:
            stderr.write(f"pacerctl {args.group}: error: {error}\n")
            return 2
    try:
        context = _context(args, settings)
        key = _key(args, settings, context)
    except ConfigError as error:
        stderr.write(f"error: {error}\n")
        return 2
    if not key:
        stderr.write(NO_KEY)
        return 2
    addr = args.addr or settings.addr or (context.addr if context is not None else "") or DEFAULT_ADDR
    output = "json" if args.json else (args.output or "table")
    client = ControlClient(addr, key, client_tls_credentials(_tls(settings, context)))
    try:
        session = Session(client.call, now, stdout, stderr, output, environment(environ))
        return int(args.action(session, args))
    except UsageError as error:
        stderr.write(_usage_error(error, args, output))
        return 2
    except ApiError as error:
        stderr.write(
            render.error_json(error) if output == "json" else render.error_text(error, commands.flag_for, addr)
        )
        return exit_code(error.code)
    finally:
        client.close()


def _usage_error(error: UsageError, args: argparse.Namespace, output: str) -> str:
    """A usage error found after parsing (nothing to change, an ambiguous name): text naming the command, or under
    `-o json` the JSON of a refused call with the code its exit code shares, INVALID_ARGUMENT."""
    if output == "json":
        return render.error_json(ApiError("INVALID_ARGUMENT", str(error)))
    command = " ".join(part for part in (args.group, getattr(args, "command", None)) if part)
    return f"pacerctl {command}: error: {error}\n"


def main() -> None:
    """The `pacerctl` console script."""
    try:
        code = run(sys.argv[1:], sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader (`| head`) left: stop quietly, and keep Python from failing again when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
