"""`pacerctl config ...`: list, show, choose, write and delete the named contexts (see `pacer_cli.contexts`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TextIO

from pacer_cli.contexts import CONTEXT_FIELDS, CliConfig, ConfigError, Context, load_config, save_config
from pacer_cli.settings import CliSettings


def add_parsers(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `config` group and its commands."""
    group = groups.add_parser(
        "config",
        help="named contexts: which control plane, key file and TLS to use",
        description="Named contexts, as kubectl has them; the file is $PACER_CONFIG, else "
        "$XDG_CONFIG_HOME/pacer/config.yaml, else ~/.config/pacer/config.yaml.",
    )
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("get-contexts", help="list the contexts; * marks the current one").set_defaults(
        local=get_contexts
    )
    commands.add_parser("current-context", help="print the current context's name").set_defaults(local=current_context)
    use = commands.add_parser("use-context", help="make a context the current one")
    use.add_argument("name")
    use.set_defaults(local=use_context)
    write = commands.add_parser(
        "set-context",
        help="create a context or change some of its values",
        epilog="example:\n  pacerctl config set-context prod --addr pacer.example.com:443 "
        "--key-file ~/.config/pacer/prod.key --ca-file ~/.config/pacer/ca.pem",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    write.add_argument("name")
    for name in CONTEXT_FIELDS:
        write.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"the context's {name.replace('_', ' ')}")
    write.set_defaults(local=set_context)
    delete = commands.add_parser("delete-context", help="delete a context")
    delete.add_argument("name")
    delete.set_defaults(local=delete_context)


def get_contexts(args: argparse.Namespace, settings: CliSettings, out: TextIO, _: object) -> int:
    config = load_config(settings.config_file)
    if not config.contexts:
        out.write(f"no contexts in {settings.config_file}; add one with `pacerctl config set-context`\n")
        return 0
    rows = [("CURRENT", "NAME", "ADDR", "KEY FILE")]
    rows += [
        ("*" if c.name == config.current else "", c.name, c.addr or "-", c.key_file or "-") for c in config.contexts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0


def current_context(args: argparse.Namespace, settings: CliSettings, out: TextIO, _: object) -> int:
    config = load_config(settings.config_file)
    if not config.current:
        raise ConfigError("no current context; choose one with `pacerctl config use-context NAME`")
    out.write(config.current + "\n")
    return 0


def use_context(args: argparse.Namespace, settings: CliSettings, out: TextIO, _: object) -> int:
    config = load_config(settings.config_file)
    config.find(args.name)
    save_config(settings.config_file, replace(config, current=args.name))
    out.write(f"switched to context {args.name!r}\n")
    return 0


def set_context(args: argparse.Namespace, settings: CliSettings, out: TextIO, _: object) -> int:
    config = load_config(settings.config_file)
    changes = {name: getattr(args, name) for name in CONTEXT_FIELDS if getattr(args, name) is not None}
    try:
        context = replace(config.find(args.name), **changes)
        verb = "changed"
    except ConfigError:
        context, verb = Context(args.name, **changes), "created"
    updated = config.with_context(context)
    if not updated.current:
        updated = replace(updated, current=context.name)  # the first context is the one used
    save_config(settings.config_file, updated)
    out.write(f"context {args.name!r} {verb} in {settings.config_file}\n")
    return 0


def delete_context(args: argparse.Namespace, settings: CliSettings, out: TextIO, _: object) -> int:
    config = load_config(settings.config_file)
    config.find(args.name)
    remaining = tuple(c for c in config.contexts if c.name != args.name)
    current = "" if config.current == args.name else config.current
    save_config(settings.config_file, CliConfig(current, remaining))
    out.write(f"deleted context {args.name!r}\n")
    return 0
