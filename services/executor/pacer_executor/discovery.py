"""Finds every scheduler replica behind each configured address and keeps one stream open to each.

A Kubernetes headless Service name resolves to the addresses of all ready scheduler pods. gRPC's default channel
would connect to just one of them, so each executor would serve a single scheduler and a scheduler without
executors would claim runs nobody can take. Instead the names are resolved here, again every `interval_s`, and one
`SchedulerStream` is kept per address found: replicas that appear get a stream, replicas that disappear lose theirs
(the work not begun is given back to that scheduler with Released; runs begun go on, are reported Held and their
results go out on any open stream).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from pacer_common.ports import join_addr, parse_addr
from pacer_executor.worker import split_capacity

log = logging.getLogger("pacer.executor.discovery")

Resolve = Callable[[str, int], Awaitable[list[str]]]


class Stream(Protocol):
    """What the pool needs of a stream (pacer_executor.stream.SchedulerStream)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"  # one scheduler, whatever loopback addresses the name has
    return True


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as host:port; IPv4 when there is any, else IPv6."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({info[4][0] for info in found if info[0] == socket.AF_INET})
    v6 = sorted({info[4][0] for info in found if info[0] == socket.AF_INET6})
    return [join_addr(str(ip), port) for ip in (v4 or v6)]


async def expand(addresses: Sequence[str], resolve: Resolve, known: dict[str, list[str]]) -> list[str]:
    """The stream targets for the configured `addresses`: literals as they are, names resolved.

    A name that fails to resolve keeps the targets it had (`known`, updated in place): a DNS hiccup must not
    close working streams.
    """
    targets: list[str] = []
    for address in addresses:
        host, port = parse_addr(address)
        if is_literal(host):
            targets.append(address)
            continue
        try:
            known[address] = await resolve(host, port) or known.get(address, [])
        except OSError as error:
            log.warning(
                "scheduler name did not resolve",
                extra={"event": "scheduler.unresolved", "scheduler": address, "reason": str(error)},
            )
        targets.extend(known.get(address, []))
    return list(dict.fromkeys(targets))


class SchedulerPool:
    """One stream per scheduler replica, kept in step with DNS until `close()`."""

    def __init__(
        self,
        addresses: Sequence[str],
        new_stream: Callable[[str, int], Stream],
        capacity: int,
        interval_s: float,
        resolve: Resolve = resolve_all,
    ) -> None:
        self._addresses = addresses
        self._new_stream = new_stream
        self._capacity = capacity
        self._interval_s = interval_s
        self._resolve = resolve
        self._known: dict[str, list[str]] = {}
        self._streams: dict[str, Stream] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> list[str]:
        return list(self._streams)

    async def start(self) -> None:
        """Open the first streams, then follow DNS in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._follow(), name="scheduler discovery")

    async def refresh(self) -> None:
        """Open streams to replicas that appeared and close those of replicas that went away."""
        targets = await expand(self._addresses, self._resolve, self._known)
        gone = [address for address in self._streams if address not in targets]
        for address in gone:
            log.info("scheduler replica gone", extra={"event": "scheduler.gone", "scheduler": address})
            await self._streams.pop(address).close()
        shares = split_capacity(self._capacity, max(1, len(targets)))
        for address, share in zip(targets, shares, strict=False):
            if address not in self._streams:
                log.info("scheduler replica found", extra={"event": "scheduler.found", "scheduler": address})
                self._streams[address] = self._new_stream(address, share)
                self._streams[address].start()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception:  # discovery must never stop the executor
                log.exception("scheduler discovery failed", extra={"event": "scheduler.discovery_failed"})

    async def close(self) -> None:
        """Stop following DNS and close every stream."""
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(*(stream.close() for stream in self._streams.values()))

    def streams(self) -> Iterable[Stream]:
        return list(self._streams.values())
