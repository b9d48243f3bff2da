"""TLS for Pacer's gRPC traffic, from PEM files named by settings; plaintext when no file is named.

Servers: a certificate and key give TLS; a client CA as well gives mutual TLS (every caller must present a
certificate that CA signed). Clients: a CA file makes the channel TLS, trusting that CA; a client certificate and
key as well make it present that identity. Files are read once, at start; a half-given pair or an unreadable file
is a `TlsError` then, never a silent fallback to plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from pacer_common.ports import cannot_listen
from pacer_common.settings import ClientTls, ServerTls


class TlsError(ValueError):
    """The TLS settings are incomplete, or a file they name cannot be read."""


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TlsError(f"{setting}={path}: cannot read it ({error.strerror})") from None


def _pair(cert_file: str, key_file: str, cert_setting: str, key_setting: str) -> tuple[bytes, bytes] | None:
    """The (key, certificate chain) PEM pair, None when neither is set; TlsError when only one is."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        raise TlsError(f"{cert_setting} and {key_setting} go together: set both or neither")
    return _read(key_file, key_setting), _read(cert_file, cert_setting)


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials | None:
    """Credentials for a server: None (plaintext) when no file is set; TLS with the certificate and key; mutual TLS
    (client certificates required, verified against `client_ca_file`) when that is set too.

    Settings named in errors: PACER_TLS_CERT_FILE, PACER_TLS_KEY_FILE, PACER_TLS_CLIENT_CA_FILE.
    """
    pair = _pair(cert_file, key_file, "PACER_TLS_CERT_FILE", "PACER_TLS_KEY_FILE")
    if pair is None:
        if client_ca_file:
            raise TlsError("PACER_TLS_CLIENT_CA_FILE needs PACER_TLS_CERT_FILE and PACER_TLS_KEY_FILE")
        return None
    if not client_ca_file:
        return grpc.ssl_server_credentials([pair])
    client_ca = _read(client_ca_file, "PACER_TLS_CLIENT_CA_FILE")
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=True)


def channel_credentials(ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials | None:
    """Credentials for a client: None (plaintext) when no file is set; TLS trusting `ca_file` (the system's roots
    when only a client certificate is given); presenting the client certificate and key when both are set.

    Settings named in errors: PACER_TLS_CA_FILE, PACER_TLS_CLIENT_CERT_FILE, PACER_TLS_CLIENT_KEY_FILE.
    """
    pair = _pair(cert_file, key_file, "PACER_TLS_CLIENT_CERT_FILE", "PACER_TLS_CLIENT_KEY_FILE")
    if pair is None and not ca_file:
        return None
    trusted = _read(ca_file, "PACER_TLS_CA_FILE") if ca_file else None
    key, chain = pair if pair is not None else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=trusted, private_key=key, certificate_chain=chain)


def add_port(server: grpc.aio.Server, addr: str, credentials: grpc.ServerCredentials | None, *, setting: str) -> int:
    """Listen on `addr` with TLS when `credentials` are given, else in plaintext; returns the port.

    When it cannot, a `ListenError` (`PortInUse` when the port is taken) names `setting`, the setting `addr`
    came from. Depending on its version grpc raises RuntimeError or returns 0 without saying why; the reason is
    found by binding the address plainly. Make `server` with `pacer_common.ports.grpc_server`, which never shares
    a port.
    """
    try:
        port = server.add_insecure_port(addr) if credentials is None else server.add_secure_port(addr, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise cannot_listen(setting, addr)
    return int(port)


def open_channel(
    addr: str,
    credentials: grpc.ChannelCredentials | None,
    *,
    options: Sequence[tuple[str, object]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel to `addr`: TLS when `credentials` are given, else plaintext."""
    if credentials is None:
        return grpc.aio.insecure_channel(addr, options=list(options), interceptors=list(interceptors))
    return grpc.aio.secure_channel(addr, credentials, options=list(options), interceptors=list(interceptors))


def server_tls_credentials(tls: ServerTls, *, client_certificates: bool = True) -> grpc.ServerCredentials | None:
    """`server_credentials` of a service's TLS settings; without `client_certificates` the client CA is left out
    (a port that serves server TLS only although the service has mutual TLS elsewhere)."""
    client_ca_file = tls.client_ca_file if client_certificates else ""
    return server_credentials(tls.cert_file, tls.key_file, client_ca_file)


def client_tls_credentials(tls: ClientTls) -> grpc.ChannelCredentials | None:
    """`channel_credentials` of a client's TLS settings; None (plaintext) when none is set."""
    return channel_credentials(tls.ca_file, tls.client_cert_file, tls.client_key_file)
