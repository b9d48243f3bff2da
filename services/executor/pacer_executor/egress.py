"""Egress policy: which addresses the executor may call, and an aiohttp resolver that enforces it.

The decision (`EgressPolicy.refusal`) is pure. `PolicyResolver` applies it to every address a host name resolves
to and hands aiohttp only the allowed ones, so the connection goes to an address that was checked: a second DNS
answer cannot redirect it (no DNS-rebinding window). aiohttp never asks the resolver about IP literals, so callers
judge those with `EgressPolicy.destination_refusal` before sending.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Category = Literal["cloud metadata", "loopback", "private", "shared (CGNAT)", "link-local", "multicast", "reserved"]

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# The first matching row names an address, so the metadata row must precede link-local and fc00::/7,
# which contain the metadata addresses.
_REFUSED: Final[tuple[tuple[Category, tuple[IPNetwork, ...]], ...]] = (
    ("cloud metadata", _networks("169.254.169.254/32", "fd00:ec2::254/128")),
    ("loopback", _networks("127.0.0.0/8", "::1/128")),
    ("private", _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("shared (CGNAT)", _networks("100.64.0.0/10")),
    ("link-local", _networks("169.254.0.0/16", "fe80::/10")),
    ("multicast", _networks("224.0.0.0/4", "ff00::/8")),
    (
        "reserved",
        _networks(
            "0.0.0.0/8",  # "this network", including the unspecified address
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24",  # documentation (TEST-NET-1)
            "198.18.0.0/15",  # benchmarking
            "198.51.100.0/24",  # documentation (TEST-NET-2)
            "203.0.113.0/24",  # documentation (TEST-NET-3)
            "240.0.0.0/4",  # future use, including the broadcast address
            "::/8",  # unspecified, IPv4-compatible and other IETF-reserved (mapped and NAT64 are unwrapped first)
            "100::/64",  # discard-only
            "2001:db8::/32",  # documentation
            "fec0::/10",  # deprecated site-local
        ),
    ),
)

# Judged by the IPv4 address inside: the well-known NAT64 prefix (RFC 6052) reaches any IPv4 address.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")

_HOST_LABEL: Final = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
# WHATWG URL parsing and inet_aton read a last label like "1" or "0x7f" as (part of) an IPv4 address.
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)
_LOOPBACK_PROBES: Final = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


# The kinds of refusal as metric labels (`pacer_egress_refusals_total{reason_category}`): a fixed, small set.
_CATEGORY_LABELS: Final[dict[Category, str]] = {
    "cloud metadata": "cloud_metadata",
    "loopback": "loopback",
    "private": "private",
    "shared (CGNAT)": "cgnat",
    "link-local": "link_local",
    "multicast": "multicast",
    "reserved": "reserved",
}


@dataclass(frozen=True)
class Refusal:
    """Why a destination is refused: `reason` for the run record, `category` (a short label) for counting."""

    reason: str
    category: str


class EgressBlocked(Exception):
    """A call was refused by the egress policy; `reason` says why, for the run record, `category` what kind of
    destination it was (see `Refusal`)."""

    def __init__(self, reason: str, category: str = "policy") -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


@dataclass(frozen=True)
class EgressPolicy:
    """Which destinations the executor may call.

    By default only public unicast addresses are allowed. `allow_loopback` and `allow_private` lift the loopback
    and private (RFC 1918, RFC 4193, CGNAT) refusals; `allowed_networks` and `allowed_hosts` (exact names,
    case-insensitive) lift any refusal for what they cover, except that the cloud metadata addresses stay refused
    unless `allowed_networks` lists one of them exactly (a /32 or /128).
    """

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_strings(cls, allow: str) -> EgressPolicy:
        """Parse a `PACER_EGRESS_ALLOW` value: comma separated `loopback`, `private`, CIDRs (or single addresses)
        and host names. Blank tokens are ignored; anything else raises ValueError naming the token."""
        flags: set[str] = set()
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for token in (part.strip() for part in allow.split(",")):
            if token.lower() in ("loopback", "private"):
                flags.add(token.lower())
            elif _looks_like_address(token):
                networks.append(_parse_network(token))
            elif token:
                hosts.append(_parse_host_name(token))
        return cls(
            allow_loopback="loopback" in flags,
            allow_private="private" in flags,
            allowed_networks=tuple(networks),
            allowed_hosts=tuple(hosts),
        )

    def refusal(self, address: IPAddress, host: str = "") -> str | None:
        """None if a connection to `address` (reached through the name `host`, if any) is allowed, else the reason.

        IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they carry.
        """
        found = self.judge(address, host)
        return None if found is None else found.reason

    def judge(self, address: IPAddress, host: str = "") -> Refusal | None:
        """`refusal`, with the kind of address refused."""
        judged = _embedded_ipv4(address) or address
        category = _category(judged)
        if category is None:
            return None
        refused = Refusal(_reason(address, judged, category), _CATEGORY_LABELS[category])
        if category == "cloud metadata":
            return None if self._lists_exactly(judged) else refused
        if self._allows_explicitly(judged, host) or self._allows_category(category):
            return None
        return refused

    def destination_refusal(self, scheme: str, host: str) -> str | None:
        """Judge a URL's scheme and host (as the URL carries it) before anything is sent; None if it may proceed.

        IP literals and loopback names (`localhost`, `*.localhost`) are judged here; other names return None and
        are judged address by address by `PolicyResolver` when aiohttp resolves them.
        """
        found = self.judge_destination(scheme, host)
        return None if found is None else found.reason

    def judge_destination(self, scheme: str, host: str) -> Refusal | None:
        """`destination_refusal`, with the kind of destination refused."""
        if scheme.lower() not in ALLOWED_SCHEMES:
            return Refusal(f"scheme {scheme!r} is not allowed (only http and https)", "scheme")
        literal = _parse_literal(host)
        if literal is not None:
            return self.judge(literal, host)
        if _looks_numeric(host):
            return Refusal(f"{host} is not a canonical IP address", "non_canonical")
        if _is_loopback_name(host) and all(self.refusal(probe, host) for probe in _LOOPBACK_PROBES):
            return Refusal(f"{host} names the loopback interface", "loopback")
        return None

    def _lists_exactly(self, address: IPAddress) -> bool:
        return any(net.num_addresses == 1 and address in net for net in self.allowed_networks)

    def _allows_explicitly(self, judged: IPAddress, host: str) -> bool:
        name = _normalize_host(host)
        if name and any(_normalize_host(allowed) == name for allowed in self.allowed_hosts):
            return True
        # Only the judged address counts: allowing ::/0 must not open ::ffff:10.0.0.1.
        return any(judged in net for net in self.allowed_networks)

    def _allows_category(self, category: Category) -> bool:
        if category == "loopback":
            return self.allow_loopback
        return self.allow_private and category in ("private", "shared (CGNAT)")


class PolicyResolver(AbstractResolver):
    """An aiohttp resolver that returns only the addresses the policy allows for the name.

    Raises EgressBlocked when none remain. Lookup errors of the upstream resolver propagate unchanged, so aiohttp
    reports them as DNS failures.
    """

    def __init__(self, policy: EgressPolicy, upstream: AbstractResolver) -> None:
        self._policy = policy
        self._upstream = upstream

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._upstream.resolve(host, port, family)
        refusals = [self._judge(answer, host) for answer in answers]
        allowed = [answer for answer, refusal in zip(answers, refusals, strict=True) if refusal is None]
        if allowed:
            return allowed
        # Every answer was refused (or there were none): report the first reason, it names the address.
        first = next((refusal for refusal in refusals if refusal is not None), _NO_ADDRESSES)
        raise EgressBlocked(f"{host}: {first.reason}", first.category)

    async def close(self) -> None:
        await self._upstream.close()

    def _judge(self, answer: ResolveResult, host: str) -> Refusal | None:
        try:
            address = ipaddress.ip_address(answer["host"])
        except ValueError:
            return Refusal(f"the resolver answered {answer['host']!r}, which is not an IP address", "unresolvable")
        return self._policy.judge(address, host)


_NO_ADDRESSES: Final = Refusal("the name resolved to no addresses", "unresolvable")


def _category(address: IPAddress) -> Category | None:
    for category, networks in _REFUSED:
        if any(address in net for net in networks):
            return category
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _reason(address: IPAddress, judged: IPAddress, category: Category) -> str:
    shown = str(address) if address == judged else f"{address} (carrying {judged})"
    return f"{shown} is a {category} address"


def _parse_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _looks_numeric(host: str) -> bool:
    last_label = host.rstrip(".").rsplit(".", 1)[-1]
    return ":" in host or _NUMERIC_LABEL.fullmatch(last_label) is not None


def _is_loopback_name(host: str) -> bool:
    name = _normalize_host(host)
    return name == "localhost" or name.endswith(".localhost")


def _normalize_host(host: str) -> str:
    return host.lower().rstrip(".")


def _looks_like_address(token: str) -> bool:
    return "/" in token or ":" in token or (bool(token) and token.replace(".", "").isdigit())


def _parse_network(token: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(token)
    except ValueError as exc:
        raise ValueError(f"egress allow token {token!r} is not a valid address or CIDR: {exc}") from exc


def _parse_host_name(token: str) -> str:
    name = _normalize_host(token)
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"egress allow token {token!r} is not 'loopback', 'private', a CIDR or a host name")
    return name
