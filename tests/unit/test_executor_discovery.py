"""Scheduler discovery: one stream per replica behind each name, following DNS, steady through DNS failures."""

from __future__ import annotations

import pytest

from pacer_common.ports import join_addr, parse_addr
from pacer_executor.discovery import SchedulerPool, expand, is_literal


class FakeDns:
    def __init__(self) -> None:
        self.answers: dict[str, list[str] | OSError] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[host]
        if isinstance(answer, OSError):
            raise answer
        return [join_addr(ip, port) for ip in answer]


class FakeStream:
    def __init__(self, address: str, share: int, log: list[str]) -> None:
        self.address, self.share, self._log = address, share, log

    def start(self) -> None:
        self._log.append(f"start {self.address} {self.share}")

    async def close(self) -> None:
        self._log.append(f"close {self.address}")


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:50052", ("127.0.0.1", 50052)), ("[::1]:50052", ("::1", 50052)), ("sched:1", ("sched", 1))],
)
def test_addresses_split_into_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_addr(address) == expected
    assert join_addr(*expected) == address


@pytest.mark.parametrize("bad", ["scheduler", "host:", ":50052"])
def test_an_address_without_a_port_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_addr(bad)


def test_ip_literals_and_localhost_are_not_resolved() -> None:
    assert is_literal("10.0.0.7")
    assert is_literal("fd00::7")
    assert is_literal("localhost")
    assert not is_literal("pacer-scheduler.pacer.svc.cluster.local")


@pytest.mark.asyncio
async def test_a_name_expands_to_every_replica_and_a_failed_lookup_keeps_the_last_answer() -> None:
    dns, known = FakeDns(), {}
    dns.answers["sched"] = ["10.0.0.2", "10.0.0.1"]
    targets = await expand(["sched:50052", "127.0.0.1:50052", "sched:50052"], dns, known)
    assert targets == ["10.0.0.2:50052", "10.0.0.1:50052", "127.0.0.1:50052"]
    dns.answers["sched"] = OSError("temporary failure in name resolution")
    assert await expand(["sched:50052"], dns, known) == ["10.0.0.2:50052", "10.0.0.1:50052"]


@pytest.mark.asyncio
async def test_the_pool_opens_and_closes_streams_as_replicas_come_and_go() -> None:
    dns, log = FakeDns(), []
    dns.answers["sched"] = ["10.0.0.1", "10.0.0.2"]
    pool = SchedulerPool(["sched:50052"], lambda a, s: FakeStream(a, s, log), capacity=10, interval_s=60, resolve=dns)
    await pool.start()
    assert log == ["start 10.0.0.1:50052 5", "start 10.0.0.2:50052 5"]
    dns.answers["sched"] = ["10.0.0.2", "10.0.0.3"]
    await pool.refresh()
    assert log[2:] == ["close 10.0.0.1:50052", "start 10.0.0.3:50052 5"]
    assert sorted(pool.addresses) == ["10.0.0.2:50052", "10.0.0.3:50052"]
    await pool.refresh()  # nothing changed: nothing happens
    assert len(log) == 4
    await pool.close()
    assert sorted(log[4:]) == ["close 10.0.0.2:50052", "close 10.0.0.3:50052"]
