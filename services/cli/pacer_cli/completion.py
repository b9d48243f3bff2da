"""`pacerctl completion bash|zsh|fish`: a shell completion script, generated from the command line's own parser.

Nothing is written by hand per command, so the scripts cannot drift from what pacerctl accepts: groups, their
commands and every option are read off the argparse tree. Install with, e.g.,
`pacerctl completion bash > ~/.local/share/bash-completion/completions/pacerctl` (zsh: into a directory on
`$fpath` as `_pacerctl`; fish: `~/.config/fish/completions/pacerctl.fish`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TextIO

from pacer_cli.settings import CliSettings

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Level:
    """What can follow at one place of the command line: subcommands (with their help) and options."""

    commands: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    valued: list[str] = field(default_factory=list)  # options that take a value (the next word is not a command)
    choices: list[str] = field(default_factory=list)  # positional choices, e.g. the shells


def add_parser(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shell = groups.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    shell.add_argument("shell", choices=SHELLS)
    shell.set_defaults(local=print_script)


def print_script(args: argparse.Namespace, settings: CliSettings, out: TextIO, parser: argparse.ArgumentParser) -> int:
    levels = walk(parser)
    out.write({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](levels))
    return 0


def walk(parser: argparse.ArgumentParser, path: str = "") -> dict[str, Level]:
    """Every level of the parser by its path ("" for the top, "jobs", "jobs/create", ...)."""
    level = Level()
    levels = {path: level}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                level.commands[name] = helps.get(name, "")
                levels.update(walk(sub, f"{path}/{name}" if path else name))
        elif action.option_strings:
            long = [o for o in action.option_strings if o.startswith("--")] or action.option_strings
            level.options.extend(long)
            if action.nargs != 0:
                level.valued.extend(action.option_strings)
        elif action.choices:
            level.choices.extend(str(choice) for choice in action.choices)
    return levels


def bash(levels: dict[str, Level]) -> str:
    valued = sorted({option for level in levels.values() for option in level.valued})
    cases = []
    for path, level in levels.items():
        words = [*level.commands, *level.choices, *level.options]
        cases.append(f'    "{path}") words="{" ".join(words)}" ;;')
    body = "\n".join(cases)
    known = " ".join(path for path in levels if path)
    # Words that are neither an option, an option's value nor a known subcommand (ids, names) leave the place as is.
    return f"""# pacerctl completion for bash (pacerctl completion bash)
_pacerctl() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" skip="" word next i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${{COMP_WORDS[i]}}"
    if [[ -n $skip ]]; then skip=""; continue; fi
    case " {" ".join(valued)} " in *" $word "*) skip=1; continue ;; esac
    [[ $word == -* ]] && continue
    if [[ -z $path ]]; then next="$word"; else next="$path/$word"; fi
    case " {known} " in *" $next "*) path="$next" ;; esac
  done
  local words=""
  case "$path" in
{body}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _pacerctl pacerctl
"""


def zsh(levels: dict[str, Level]) -> str:
    header = (
        "#compdef pacerctl\n# pacerctl completion for zsh (pacerctl completion zsh): the bash rules, by bashcompinit\n"
    )
    return header + "autoload -U +X bashcompinit && bashcompinit\n" + bash(levels).split("\n", 1)[1]


def fish(levels: dict[str, Level]) -> str:
    lines = ["# pacerctl completion for fish (pacerctl completion fish)", "complete -c pacerctl -f"]
    top = levels[""]
    for name, help_text in top.commands.items():
        lines.append(f"complete -c pacerctl -n __fish_use_subcommand -a {name} -d {_quote(help_text)}")
    for option in top.options:
        lines.append(f"complete -c pacerctl -l {option.removeprefix('--')}")
    for path, level in levels.items():
        if not path:
            continue
        parts = path.split("/")
        condition = " && ".join(f"__fish_seen_subcommand_from {part}" for part in parts)
        deeper = " ".join(level.commands)
        if deeper:
            condition_here = f"{condition} && not __fish_seen_subcommand_from {deeper}"
            for name, help_text in level.commands.items():
                lines.append(f"complete -c pacerctl -n {_quote(condition_here)} -a {name} -d {_quote(help_text)}")
        for choice in level.choices:
            lines.append(f"complete -c pacerctl -n {_quote(condition)} -a {choice}")
        for option in level.options:
            if option.startswith("--"):
                lines.append(f"complete -c pacerctl -n {_quote(condition)} -l {option.removeprefix('--')}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
