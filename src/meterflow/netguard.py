"""Where meterflow may send an HTTP request on a customer's behalf (webhook and Slack targets).

A target URL comes from an API caller, and the worker posts to it from inside the operator's
network: without a rule it reaches loopback services, the cloud metadata endpoint and the private
network (SSRF). The rule, checked when a rule is created and again before every delivery:

- the URL is `https` (plain `http` only with the development switch), has a host, no user name or
  password, no spaces or control characters, and a bounded length;
- every address its host resolves to is public. The resolver parses the host, so every spelling
  of a numeric address (`0x7f000001`, `2130706433`, `127.1`, `[::ffff:127.0.0.1]`) is judged by
  the address it means, never by a regex; IPv6 forms that embed an IPv4 address (mapped, 6to4,
  NAT64) are judged by that address.

Delivery then connects to an address that was checked (`Target.pinned`), so a DNS answer that
changes between the check and the connection (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2000  # alert_deliveries.target
RESOLVE_TIMEOUT_SECONDS = 5.0

# Explicit, so the rule does not move with the Python version's idea of `is_global`; checked
# together with `is_global`, which covers the rest of IANA's special-purpose registries.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/8",  # unspecified, loopback, IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local (private)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class TargetRefused(Exception):
    """A target the rule refuses. `reason` is for the API caller (it names the host or the
    address, never the path: a Slack URL's path is a credential); `error_class` for the
    delivery log."""

    def __init__(self, reason: str, error_class: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and leads to: IPv4-mapped, 6to4, NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # only link-local addresses have zones
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        return address.is_global and not any(address in n for n in _BLOCKED_V6)
    return address.is_global and not any(address in n for n in _BLOCKED_V4)


@dataclass(frozen=True)
class Target:
    """A target URL that passed the form rules; `host` is ASCII (IDNA), as resolvers want it."""

    url: httpx.URL
    host: str
    port: int

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    def pinned(self, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """URL, headers and httpx extensions that reach this target at a checked `address`
        without resolving its name again: the URL names the address, the Host header and TLS
        (SNI, and the certificate check, which httpcore makes against `sni_hostname`) name the
        host."""
        return (
            self.url.copy_with(host=address, port=self.port),
            {"Host": self.host_header},
            {"sni_hostname": self.host},
        )


def parse_target(raw: str, *, allow_http: bool) -> Target:
    """Pure: the form rules. `allow_http` is the development switch."""
    if len(raw) > MAX_URL_LENGTH:
        raise TargetRefused(f"target is longer than {MAX_URL_LENGTH} characters", "invalid_target")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise TargetRefused(
            "target must not contain control characters or spaces", "invalid_target"
        )
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise TargetRefused("target is not a valid URL", "invalid_target") from exc
    schemes = ("https", "http") if allow_http else ("https",)
    if url.scheme not in schemes:
        raise TargetRefused(
            "target must be https"
            + (" or http" if allow_http else " (plain http only in development)"),
            "invalid_target",
        )
    if url.userinfo:
        raise TargetRefused("target must not carry a user name or password", "invalid_target")
    if not url.raw_host:
        raise TargetRefused("target has no host", "invalid_target")
    try:
        host = url.raw_host.decode("ascii")
        host.encode("idna")  # what the resolver will do: empty or over-long labels fail
    except UnicodeError as exc:
        raise TargetRefused("target host is not a valid name", "invalid_target") from exc
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise TargetRefused(f"target port {port} is out of range", "invalid_target")
    return Target(url=url, host=host, port=port)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives, off the event loop, within a timeout."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
        answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(a[4][0]) for a in answers))


async def resolve_public(
    target: Target, *, allow_private: bool, resolve: Resolver = system_resolver
) -> list[str]:
    """The target's addresses, every one of them public unless `allow_private` (the development
    switch). A name that resolves to one public and one private address is refused: which one a
    connection would use is not ours to choose."""
    try:
        addresses = await resolve(target.host, target.port)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve host {target.host}", "dns_error") from exc
    if not addresses:
        raise TargetRefused(f"cannot resolve host {target.host}", "dns_error")
    if not allow_private:
        for address in addresses:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError as exc:
                raise TargetRefused(
                    f"host {target.host} resolves to an unusable address", "blocked_address"
                ) from exc
            if not is_public(parsed):
                raise TargetRefused(
                    f"host {target.host} resolves to a private address {address}",
                    "blocked_address",
                )
    return addresses


async def check_target(
    raw: str, *, allow_private: bool, resolve: Resolver = system_resolver
) -> tuple[Target, list[str]]:
    """The whole rule: the form, then the addresses. `allow_private` is the development switch
    (plain http, any address)."""
    target = parse_target(raw, allow_http=allow_private)
    return target, await resolve_public(target, allow_private=allow_private, resolve=resolve)
