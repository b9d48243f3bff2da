"""Endpoint secrets at rest: header values, the URL password and the signing secrets, sealed with AES-256-GCM under
a named key.

A sealed value reads `v1.<key id>.<base64url(nonce, ciphertext and tag)>`. The endpoint's id is the associated data,
so a sealed value copied onto another endpoint's row does not open. Rows keep only what can be shown: the URL with
its password masked (`pacer_common.urls`), never a header value.

Keys are `<id>:<base64url of 32 bytes>` entries: in PACER_SECRETS_KEYS (comma separated) or one per line in the file
PACER_SECRETS_KEY_FILE (a mounted Secret). The first key seals; every key listed opens. A value sealed under a key
this process does not know makes it read the file again once, so `pacer-admin rotate-secrets-key` can add a key
while control planes run. The embedded profile generates the file in `var/` on first start.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pacer_control.settings import ControlSettings

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
DEFAULT_KEY_FILE = "secrets-keys"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SecretsError(ValueError):
    """Keys that cannot be used, or a sealed value that cannot be opened with them."""


@dataclass(frozen=True)
class SecretKey:
    key_id: str
    material: bytes = field(repr=False)

    def line(self) -> str:
        """How the key is written in a key file or PACER_SECRETS_KEYS."""
        return f"{self.key_id}:{base64.urlsafe_b64encode(self.material).decode()}"


def generate_key() -> SecretKey:
    """A new random key with a random id."""
    return SecretKey(f"k{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def parse_keys(text: str, separator: str, source: str) -> list[SecretKey]:
    """The keys in `text` (entries split by `separator`, blank entries and `#` lines skipped), first one first."""
    keys = []
    for entry in (part.strip() for part in text.split(separator)):
        if not entry or entry.startswith("#"):
            continue
        key_id, _, encoded = entry.partition(":")
        try:
            material = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
        except (ValueError, binascii.Error):
            material = b""
        if not _KEY_ID.fullmatch(key_id) or len(material) != KEY_BYTES:
            raise SecretsError(f"{source}: each key must be '<id>:<base64url of {KEY_BYTES} bytes>'")
        keys.append(SecretKey(key_id, material))
    if not keys:
        raise SecretsError(f"{source} holds no key")
    return keys


class Keyring:
    """Seals with the first key, opens with any; `reload` (when given) is asked again for an unknown key id."""

    def __init__(self, keys: Sequence[SecretKey], reload: Callable[[], Sequence[SecretKey]] | None = None) -> None:
        if not keys:
            raise SecretsError("a keyring needs at least one key")
        self._reload = reload
        self._lock = threading.Lock()
        self._use(keys)

    def _use(self, keys: Sequence[SecretKey]) -> None:
        self._primary = keys[0]
        self._ciphers = {key.key_id: AESGCM(key.material) for key in keys}

    @property
    def primary_id(self) -> str:
        return self._primary.key_id

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary.key_id].encrypt(nonce, plaintext, context.encode())
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}.{self._primary.key_id}.{encoded}"

    def open(self, sealed: str, context: str) -> bytes:
        _, key_id, encoded = key_parts(sealed)
        cipher = self._cipher(key_id)
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (ValueError, binascii.Error, InvalidTag):
            raise SecretsError(f"a value sealed under key {key_id!r} does not open (wrong key or altered)") from None

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None and self._reload is not None:
            with self._lock:
                self._use(self._reload())
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretsError(f"no key {key_id!r} among the secrets keys")
        return cipher


def key_parts(sealed: str) -> tuple[str, str, str]:
    """(version, key id, payload) of a sealed value."""
    version, _, rest = sealed.partition(".")
    key_id, _, encoded = rest.partition(".")
    if version != VERSION or not key_id or not encoded:
        raise SecretsError("not a sealed value")
    return version, key_id, encoded


@dataclass(frozen=True)
class EndpointSecrets:
    """What an endpoint keeps secret: its header values (with their names), its URL's password and its signing
    secrets (`signing_secret` signs; `previous_signing_secret`, kept through a rotation's overlap, signs too until the
    row's `previous_secret_expires_at`)."""

    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    signing_secret: str | None = field(default=None, repr=False)
    previous_signing_secret: str | None = field(default=None, repr=False)

    def seal(self, keyring: Keyring, endpoint_id: str) -> str | None:
        """The sealed form for the row, None when there is nothing to keep secret."""
        if not self.headers and self.password is None and not self._signing():
            return None
        values: dict[str, object] = {"headers": self.headers, "password": self.password}
        if self._signing():
            values["signing"] = [self.signing_secret, self.previous_signing_secret]
        plaintext = json.dumps(values, separators=(",", ":"))
        return keyring.seal(plaintext.encode(), endpoint_id)

    def _signing(self) -> bool:
        return self.signing_secret is not None or self.previous_signing_secret is not None

    @classmethod
    def open(cls, keyring: Keyring, endpoint_id: str, sealed: str | None) -> EndpointSecrets:
        if sealed is None:
            return cls()
        values = json.loads(keyring.open(sealed, endpoint_id))
        current, previous = values.get("signing") or (None, None)
        return cls(dict(values["headers"]), values["password"], current, previous)


# -- where keys come from --------------------------------------------------------------------------------------------


def _write_keys(path: Path, keys: Sequence[SecretKey], *, replace: bool = True) -> None:
    """Write the key file at once (a reader sees the old file or the new one), readable by its owner only.

    With `replace` False an existing file is kept: of two processes creating it together, one key file wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Pacer secrets keys: the first one seals, all of them open. Never delete a key still in use.\n")
        handle.writelines(f"{key.line()}\n" for key in keys)
    if replace:
        temporary.replace(path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def read_key_file(path: Path) -> list[SecretKey]:
    try:
        return parse_keys(path.read_text(), "\n", str(path))
    except OSError as error:
        raise SecretsError(f"cannot read the secrets key file {path}: {error.strerror}") from None


def add_primary_key(path: Path) -> SecretKey:
    """Generate a key and make it the first of the file at `path` (the others stay, they still open old values)."""
    key = generate_key()
    _write_keys(path, [key, *read_key_file(path)])
    return key


def key_file_of(settings: ControlSettings) -> Path | None:
    """The key file the settings name: PACER_SECRETS_KEY_FILE, else `var/secrets-keys` in the embedded profile."""
    if settings.secrets_key_file:
        return Path(settings.secrets_key_file)
    return Path(settings.var_dir) / DEFAULT_KEY_FILE if settings.bootstrap_dev else None


def settings_keyring(settings: ControlSettings) -> Keyring:
    """The keyring from PACER_SECRETS_KEYS, else from the key file (`key_file_of`). The embedded profile's own
    file is created with a new key when missing; SecretsError when no key is configured."""
    if settings.secrets_keys.strip():
        return Keyring(parse_keys(settings.secrets_keys, ",", "PACER_SECRETS_KEYS"))
    path = key_file_of(settings)
    if path is None:
        raise SecretsError("no secrets key: set PACER_SECRETS_KEYS or PACER_SECRETS_KEY_FILE (docs/operations.md)")
    if not settings.secrets_key_file and not path.exists():
        _write_keys(path, [generate_key()], replace=False)
    return Keyring(read_key_file(path), reload=lambda: read_key_file(path))
