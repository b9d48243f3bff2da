"""Egress policy: default refusals, explicit allows, the metadata exception, parsing, and the filtering resolver."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from pacer_executor.egress import EgressBlocked, EgressPolicy, PolicyResolver

DEFAULT = EgressPolicy()
METADATA = ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe")


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 carrying 127.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 carrying 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "reserved"),
        ("0.1.2.3", "reserved"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "reserved"),
        ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::", "reserved"),
        ("::7f00:1", "reserved"),  # deprecated IPv4-compatible form
        ("2001:db8::1", "reserved"),
        ("fec0::1", "reserved"),
    ],
)
def test_default_policy_refuses(address: str, category: str) -> None:
    reason = DEFAULT.refusal(ip(address))
    assert reason is not None
    assert reason.startswith(str(ip(address)))
    assert reason.endswith(f"is a {category} address")


def test_refusal_reason_is_readable() -> None:
    assert DEFAULT.refusal(ip("169.254.169.254")) == "169.254.169.254 is a cloud metadata address"
    mapped = ip("::ffff:127.0.0.1")  # printed as ::ffff:7f00:1 before Python 3.13
    assert DEFAULT.refusal(mapped) == f"{mapped} (carrying 127.0.0.1) is a loopback address"


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:93.184.216.34"],
)
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert DEFAULT.refusal(ip(address)) is None


@pytest.mark.parametrize(
    ("policy", "allowed", "refused"),
    [
        pytest.param(
            EgressPolicy(allow_loopback=True),
            ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"],
            ["10.1.2.3", "fe80::1", "169.254.169.254", "0.0.0.0"],
            id="allow-loopback",
        ),
        pytest.param(
            EgressPolicy(allow_private=True),
            ["10.1.2.3", "172.16.0.1", "192.168.1.1", "fc00::1", "100.64.0.1", "::ffff:192.168.1.1"],
            ["127.0.0.1", "::1", "fe80::1", "169.254.1.1", "169.254.169.254", "fd00:ec2::254", "224.0.0.1"],
            id="allow-private",
        ),
        pytest.param(
            EgressPolicy(allowed_networks=(net("10.1.0.0/16"), net("fe80::/10"))),
            ["10.1.2.3", "::ffff:10.1.2.3", "fe80::1"],
            ["10.2.0.1", "192.168.1.1", "127.0.0.1"],
            id="allowed-networks",
        ),
        pytest.param(
            EgressPolicy(allowed_networks=(net("169.254.0.0/16"),)),
            ["169.254.1.1", "169.254.170.2"],
            ["169.254.169.254", "::ffff:169.254.169.254"],
            id="link-local-allowed-metadata-still-refused",
        ),
        pytest.param(
            EgressPolicy(allowed_networks=(net("fc00::/7"), net("0.0.0.0/0"), net("::/0"))),
            ["fd00::1", "10.0.0.1", "127.0.0.1", "::1"],
            ["fd00:ec2::254", "169.254.169.254"],
            id="everything-allowed-but-metadata",
        ),
        pytest.param(
            EgressPolicy(allowed_networks=(net("169.254.169.254/32"),)),
            ["169.254.169.254", "::ffff:169.254.169.254"],
            ["169.254.169.253", "fd00:ec2::254"],
            id="metadata-listed-exactly",
        ),
        pytest.param(
            EgressPolicy(allowed_networks=(net("fd00:ec2::254/128"),)),
            ["fd00:ec2::254"],
            ["169.254.169.254", "fd00:ec2::253"],
            id="ipv6-metadata-listed-exactly",
        ),
    ],
)
def test_overrides(policy: EgressPolicy, allowed: list[str], refused: list[str]) -> None:
    assert {address: policy.refusal(ip(address)) for address in allowed} == dict.fromkeys(allowed)
    assert all(policy.refusal(ip(address)) is not None for address in refused)


def test_allowed_hosts_lift_refusals_for_that_name_only() -> None:
    policy = EgressPolicy(allowed_hosts=("Internal.Example",))
    assert policy.refusal(ip("10.1.2.3"), "internal.example.") is None
    assert policy.refusal(ip("127.0.0.1"), "INTERNAL.example") is None
    assert policy.refusal(ip("10.1.2.3"), "other.example") is not None
    assert policy.refusal(ip("10.1.2.3")) is not None


@pytest.mark.parametrize("address", METADATA)
def test_allowed_host_never_reaches_metadata(address: str) -> None:
    policy = EgressPolicy(allow_private=True, allowed_hosts=("metadata.google.internal",))
    assert policy.refusal(ip(address), "metadata.google.internal") is not None


policies = st.builds(
    EgressPolicy,
    allow_loopback=st.booleans(),
    allow_private=st.booleans(),
    allowed_networks=st.lists(
        st.sampled_from([net(c) for c in ("0.0.0.0/0", "::/0", "169.254.0.0/16", "169.254.169.0/24", "fc00::/7")])
    ).map(tuple),
    allowed_hosts=st.lists(st.sampled_from(["metadata", "internal.example"])).map(tuple),
)


@given(policies, st.sampled_from(METADATA), st.sampled_from(["", "metadata", "internal.example"]))
def test_metadata_needs_an_exact_listing(policy: EgressPolicy, address: str, host: str) -> None:
    assert policy.refusal(ip(address), host) is not None


@given(policies, st.ip_addresses(v=4))
def test_mapped_ipv6_is_judged_like_its_ipv4(policy: EgressPolicy, address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert (policy.refusal(mapped) is None) == (policy.refusal(address) is None)


@given(st.ip_addresses(network="127.0.0.0/8"))
def test_whole_loopback_range_follows_the_flag(address: ipaddress.IPv4Address) -> None:
    assert DEFAULT.refusal(address) is not None
    assert EgressPolicy(allow_loopback=True).refusal(address) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", EgressPolicy()),
        (" , ,", EgressPolicy()),
        ("loopback", EgressPolicy(allow_loopback=True)),
        (" Loopback , PRIVATE ", EgressPolicy(allow_loopback=True, allow_private=True)),
        ("10.0.0.0/8,fd00::/8", EgressPolicy(allowed_networks=(net("10.0.0.0/8"), net("fd00::/8")))),
        ("192.168.1.5, ::1", EgressPolicy(allowed_networks=(net("192.168.1.5/32"), net("::1/128")))),
        ("169.254.169.254/32", EgressPolicy(allowed_networks=(net("169.254.169.254/32"),))),
        ("Internal.Example., svc_a, host-1", EgressPolicy(allowed_hosts=("internal.example", "svc_a", "host-1"))),
        (
            "loopback,10.1.0.0/16,,api.internal",
            EgressPolicy(allow_loopback=True, allowed_networks=(net("10.1.0.0/16"),), allowed_hosts=("api.internal",)),
        ),
    ],
)
def test_from_strings(text: str, expected: EgressPolicy) -> None:
    assert EgressPolicy.from_strings(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.0/33",
        "10.0.0.1/8",  # host bits set: almost always a typo
        "999.1.1.1",
        "1.2.3.4.5",
        "fd00::/200",
        "*.example.com",
        "http://example.com",
        "exa mple.com",
        "-bad.example",
        "a..b",
        "loopback,not/valid",
        "x" * 64 + ".example",
    ],
)
def test_from_strings_rejects_bad_tokens(text: str) -> None:
    with pytest.raises(ValueError, match="egress allow token"):
        EgressPolicy.from_strings(text)


@pytest.mark.parametrize(
    ("scheme", "host", "fragment"),
    [
        ("ftp", "example.com", "scheme 'ftp' is not allowed"),
        ("file", "", "scheme 'file' is not allowed"),
        ("http", "127.0.0.1", "loopback"),
        ("https", "::1", "loopback"),
        ("http", "[::1]", "loopback"),
        ("http", "169.254.169.254", "cloud metadata"),
        ("http", "2130706433", "not a canonical IP address"),
        ("http", "127.1", "not a canonical IP address"),
        ("http", "0x7f.1", "not a canonical IP address"),
        ("http", "127.0.0.1.", "not a canonical IP address"),
        ("http", "localhost", "names the loopback interface"),
        ("http", "LOCALHOST.", "names the loopback interface"),
        ("http", "api.localhost", "names the loopback interface"),
    ],
)
def test_destination_refusal(scheme: str, host: str, fragment: str) -> None:
    reason = DEFAULT.destination_refusal(scheme, host)
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize(
    ("policy", "scheme", "host"),
    [
        (DEFAULT, "http", "example.com"),  # names are left to the resolver
        (DEFAULT, "HTTPS", "93.184.216.34"),
        (EgressPolicy(allow_loopback=True), "http", "localhost"),
        (EgressPolicy(allowed_hosts=("localhost",)), "http", "localhost"),
        (EgressPolicy(allowed_networks=(net("::1/128"),)), "http", "localhost"),
        (EgressPolicy(allowed_networks=(net("127.0.0.1/32"),)), "http", "127.0.0.1"),
    ],
)
def test_destination_allowed(policy: EgressPolicy, scheme: str, host: str) -> None:
    assert policy.destination_refusal(scheme, host) is None


class FakeDns(AbstractResolver):
    """Answers from a table; an unknown name fails the way getaddrinfo does."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [answer(address, host, port) for address in self.table[host]]

    async def close(self) -> None:
        self.closed = True


def answer(address: str, host: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


DNS = FakeDns(
    {
        "mixed.example": ["10.0.0.1", "93.184.216.34", "::1", "2606:4700::1111"],
        "private.example": ["10.0.0.1", "fd00::5"],
        "metadata.example": ["169.254.169.254"],
        "odd.example": ["not-an-address"],
        "empty.example": [],
    }
)


@pytest.mark.asyncio
async def test_resolver_keeps_only_allowed_answers() -> None:
    results = await PolicyResolver(DEFAULT, DNS).resolve("mixed.example", 443)
    assert [(r["host"], r["port"]) for r in results] == [("93.184.216.34", 443), ("2606:4700::1111", 443)]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("private.example", "private.example: 10.0.0.1 is a private address"),
        ("metadata.example", "metadata.example: 169.254.169.254 is a cloud metadata address"),
        ("odd.example", "odd.example: the resolver answered 'not-an-address', which is not an IP address"),
        ("empty.example", "empty.example: the name resolved to no addresses"),
    ],
)
async def test_resolver_blocks_when_nothing_is_allowed(name: str, reason: str) -> None:
    with pytest.raises(EgressBlocked) as raised:
        await PolicyResolver(DEFAULT, DNS).resolve(name, 80)
    assert raised.value.reason == reason


@pytest.mark.asyncio
async def test_resolver_honours_allowed_hosts_but_not_for_metadata() -> None:
    policy = EgressPolicy(allowed_hosts=("private.example", "metadata.example"))
    results = await PolicyResolver(policy, DNS).resolve("private.example", 80)
    assert [r["host"] for r in results] == ["10.0.0.1", "fd00::5"]
    with pytest.raises(EgressBlocked, match="cloud metadata"):
        await PolicyResolver(policy, DNS).resolve("metadata.example", 80)


@pytest.mark.asyncio
async def test_resolver_passes_lookup_errors_through_and_closes_upstream() -> None:
    upstream = FakeDns({})
    resolver = PolicyResolver(DEFAULT, upstream)
    with pytest.raises(socket.gaierror):
        await resolver.resolve("nowhere.invalid", 80)
    await resolver.close()
    assert upstream.closed
