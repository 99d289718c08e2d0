"""What a webhook may reach: public addresses only, resolved once and pinned (no DNS rebinding)."""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

#: IPv6 forms that carry an IPv4 address: a forbidden IPv4 address is forbidden in any of them
#: (Python's `is_global` says yes to `64:ff9b::7f00:1`, loopback through NAT64).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, the well-known prefix: the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, local-use: never a delivery address
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated `::a.b.c.d` (and `::`, `::1`): never
_TEREDO = ipaddress.IPv6Network("2001::/32")  # the client's IPv4 address is hidden in it: never

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: Address) -> bool:
    """True only for a unicast address on the public internet, whatever IPv6 form wraps an IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL or address in _TEREDO or address in _IPV4_COMPATIBLE:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:  # reaches that IPv4 address: it decides
            return is_public_address(embedded)
    return bool(
        address.is_global
        and not (address.is_multicast or address.is_reserved or address.is_unspecified or address.is_loopback)
        and not address.is_link_local
    )


def _parse_address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%", 1)[0])


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (an IP literal is itself); raises OSError if none."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def address_allowed(url: str, allow_private: bool, resolver: Resolver = resolve_host) -> bool:
    """False if the URL's host is or resolves to a non-public address (loopback, private, link-local…)."""
    if allow_private:
        return True
    parts = urlsplit(url)
    try:
        addresses = await resolver(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError, ValueError):
        return True  # does not resolve (now): the delivery fails, and is retried
    return all(is_public_address(_parse_address(address)) for address in addresses)


class AddressRefused(Exception):
    """The URL's host is (or resolves to) an address a webhook must not reach."""


@dataclass(frozen=True)
class PinnedRequest:
    """A delivery's URL with the host replaced by the checked address, and what keeps the name for HTTP and TLS."""

    url: str
    host_header: str
    sni_hostname: str | None
    address: str


async def pin(url: str, allow_private: bool, resolver: Resolver = resolve_host) -> PinnedRequest:
    """Resolve the URL's host once, check every address, and name the one to connect to.

    The delivery connects to that address (the `Host` header and TLS's SNI and certificate
    check keep the name): a name cannot resolve to a public address for the check and to an
    internal one for the connection (DNS rebinding).
    """
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")  # IDNA-encoded: what DNS, `Host` and SNI carry
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = await resolver(host, port)  # OSError: does not resolve (now)
    if not addresses:
        raise OSError(f"{host} does not resolve")
    parsed = [_parse_address(address) for address in addresses]
    if not allow_private and not all(is_public_address(address) for address in parsed):
        raise AddressRefused(host)
    chosen = parsed[0]
    literal = host.strip("[]")
    try:
        is_literal = _parse_address(literal) == chosen
    except ValueError:
        is_literal = False
    return PinnedRequest(
        url=str(target.copy_with(host=str(chosen))),
        host_header=target.netloc.decode("ascii"),
        sni_hostname=None if is_literal or target.scheme != "https" else host,
        address=str(chosen),
    )
