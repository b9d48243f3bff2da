"""Where Pacer's servers listen: one rule for every port, and one error when a port cannot be had.

The rule: a port is never shared. grpc turns SO_REUSEPORT on by default on Linux, so a second process on a port
already in use would start and take half of its connections; every gRPC server Pacer creates (`grpc_server`)
turns it off, and the HTTP listeners never set it. A port that cannot be had is a `ListenError` naming the setting
and the address (`PortInUse` when another process holds it), raised while the service starts, before it serves.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

import grpc

from pacer_common.guard import StatusGuard

# Merged into every gRPC server's options: with SO_REUSEPORT on, binding a port in use would succeed.
NO_PORT_SHARING = (("grpc.so_reuseport", 0),)
MAX_PORT = 65_535


class ListenError(ValueError):
    """A server cannot listen at the address its setting names."""

    def __init__(self, setting: str, addr: str, reason: str) -> None:
        super().__init__(f"{setting}={addr} {reason}")
        self.setting = setting
        self.addr = addr


class PortInUse(ListenError):
    """Another process (or another server of this one) already listens at the address."""

    def __init__(self, setting: str, addr: str) -> None:
        super().__init__(setting, addr, "is already in use")


def parse_addr(addr: str, setting: str = "") -> tuple[str, int]:
    """`host:port` as (host, port), the one rule for every address Pacer reads: an IPv6 host in brackets
    (`[::1]:50051`), a host always given, a port of digits within 0-65535. ValueError otherwise, naming `setting`
    (the variable `addr` came from) when given."""
    host, sep, port = addr.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or (":" in host and not bracketed) or not port.isdigit() or int(port) > MAX_PORT:
        raise ValueError(f"{setting + '=' if setting else ''}{addr!r} is not host:port")
    return host, int(port)


def join_addr(host: str, port: int) -> str:
    """`host:port`, the inverse of `parse_addr`: an IPv6 host is put in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(setting: str, addr: str, error: OSError) -> ListenError:
    """What a failed bind of `addr` means to an operator: `PortInUse`, or a ListenError saying why."""
    if error.errno == errno.EADDRINUSE:
        return PortInUse(setting, addr)
    return ListenError(setting, addr, f"cannot be listened on: {error.strerror or error}")


def grpc_server(
    options: Sequence[tuple[str, object]] = (),
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    guard: StatusGuard | None = None,
) -> grpc.aio.Server:
    """A grpc.aio server with `options` that never shares its ports (see the module's docstring).

    Every call passes `interceptors` and then `guard` (a plain `StatusGuard` when None), the one layer that turns
    whatever a handler raises into a status (`pacer_common.guard`).
    """
    chain = [*interceptors, guard or StatusGuard()]
    return grpc.aio.server(options=[*options, *NO_PORT_SHARING], interceptors=chain)


def bind_socket(setting: str, addr: str) -> socket.socket:
    """A TCP socket bound to `addr` (not yet listening) for an HTTP server to serve on; ListenError when it cannot.

    SO_REUSEADDR is set, as asyncio and grpc set it, so a restart need not wait out connections in TIME_WAIT; it
    never lets two processes listen on one port.
    """
    try:
        host, port = parse_addr(addr)
    except ValueError:
        raise ListenError(setting, addr, "is not host:port") from None
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise listen_error(setting, addr, error) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as error:
        sock.close()
        raise listen_error(setting, addr, error) from None
    return sock


def cannot_listen(setting: str, addr: str) -> ListenError:
    """Why a server could not listen on `addr` although it did not say (grpc), found by binding it plainly."""
    try:
        bind_socket(setting, addr).close()
    except ListenError as error:
        return error
    return ListenError(setting, addr, "cannot be listened on")
