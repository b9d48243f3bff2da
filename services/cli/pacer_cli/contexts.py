"""Named contexts, as kubectl has them: which control plane, with which key and TLS, chosen by one name.

The file (YAML, `$PACER_CONFIG`, else `$XDG_CONFIG_HOME/pacer/config.yaml`, else `~/.config/pacer/config.yaml`):

    current-context: prod
    contexts:
      - name: local
        addr: 127.0.0.1:50051
        key-file: ~/src/pacer/var/dev-api-key
      - name: prod
        addr: pacer.example.com:443
        key-file: ~/.config/pacer/prod.key
        ca-file: ~/.config/pacer/ca.pem

A context holds the path of a key file, never a key: the file is written by its owner with the permissions a secret
needs, and the config file can be shown or shared. `--context NAME` picks another context for one command; flags
and `PACER_*` variables still win over the context's values.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

KEYS = {"addr": "addr", "key-file": "key_file", "ca-file": "ca_file", "client-cert-file": "client_cert_file",
        "client-key-file": "client_key_file"}  # fmt: skip


class ConfigError(Exception):
    """The config file cannot be read as contexts, or names a context it does not have."""


@dataclass(frozen=True)
class Context:
    """One named place to talk to: the control plane's address, a key file and the TLS files (empty: unset)."""

    name: str
    addr: str = ""
    key_file: str = ""
    ca_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""

    def key(self) -> str | None:
        """The key in `key_file`, None when the context names none."""
        if not self.key_file:
            return None
        return Path(self.key_file).expanduser().read_text().strip()

    def as_yaml(self) -> dict[str, str]:
        entry = {"name": self.name}
        entry.update({key: getattr(self, attr) for key, attr in KEYS.items() if getattr(self, attr)})
        return entry


@dataclass(frozen=True)
class CliConfig:
    """The contexts of a config file, in file order, and the current one ("" when none is chosen)."""

    current: str = ""
    contexts: tuple[Context, ...] = field(default_factory=tuple)

    def find(self, name: str) -> Context:
        for context in self.contexts:
            if context.name == name:
                return context
        known = ", ".join(c.name for c in self.contexts) or "none"
        raise ConfigError(f"no context named {name!r} (known: {known}); see `pacerctl config get-contexts`")

    def with_context(self, context: Context) -> CliConfig:
        """This config with `context` added, or replacing the one of the same name in place."""
        names = [c.name for c in self.contexts]
        if context.name in names:
            contexts = tuple(context if c.name == context.name else c for c in self.contexts)
        else:
            contexts = (*self.contexts, context)
        return replace(self, contexts=contexts)


def load_config(path: Path) -> CliConfig:
    """The config at `path`; an absent file is an empty config. Unknown keys are refused, so a typo is not ignored."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return CliConfig()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not YAML: {error}") from None
    if not isinstance(data, dict) or set(data) - {"current-context", "contexts"}:
        raise ConfigError(f"{path}: expected the keys current-context and contexts")
    contexts = tuple(_context(path, n, entry) for n, entry in enumerate(data.get("contexts") or []))
    if len({c.name for c in contexts}) != len(contexts):
        raise ConfigError(f"{path}: two contexts have the same name")
    current = data.get("current-context") or ""
    if not isinstance(current, str):
        raise ConfigError(f"{path}: current-context must be a context's name")
    return CliConfig(current, contexts)


def _context(path: Path, index: int, entry: Any) -> Context:
    where = f"{path}: contexts[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError(f"{where}: each context needs a name")
    unknown = set(entry) - set(KEYS) - {"name"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: name, {', '.join(KEYS)})")
    values = {KEYS[key]: value for key, value in entry.items() if key != "name"}
    if not all(isinstance(value, str) for value in values.values()):
        raise ConfigError(f"{where}: every value is a string")
    return Context(entry["name"], **values)


def save_config(path: Path, config: CliConfig) -> None:
    """Write `config` at once (a reader sees the old file or the new one), readable by its owner only."""
    data: dict[str, Any] = {}
    if config.current:
        data["current-context"] = config.current
    data["contexts"] = [context.as_yaml() for context in config.contexts]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w") as out:
            yaml.safe_dump(data, out, sort_keys=False)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


CONTEXT_FIELDS = tuple(f.name for f in fields(Context) if f.name != "name")
