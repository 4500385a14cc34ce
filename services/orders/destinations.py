"""Where orders may send a buyer's webhooks: the rules for a webhook URL and for the addresses its host resolves to.

A webhook makes the orders server send requests to an address someone else chose, so the address must be a
public one: never loopback, private, link-local, multicast, reserved or a cloud's metadata service. The rules
are checked when the URL is set and again, on the addresses the host resolves to then, each time a message
is sent (DNS can change in between). An operator may trust networks of its own (`allowed`), such as a test
receiver beside the service. Pure: resolving names is the caller's work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services, which hand out cloud credentials: named even where another rule covers them.
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address reached through a gateway


class RefusedDestination(ValueError):
    """The URL or address may not receive webhooks; the message says why, without echoing resolved addresses."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: its scheme, host (an IP literal or a name still to resolve) and port."""

    url: str
    scheme: str
    host: str
    port: int
    address: Address | None  # set when the host is an IP literal


def _embedded_ipv4(address: Address) -> Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), or None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client: the address the tunnel delivers to
    return None


def _what_is_wrong(address: Address) -> str | None:
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


@dataclass(frozen=True)
class DestinationRules:
    """The rules in force: whether plain `http` is refused, and which networks the operator trusts anyway."""

    require_https: bool = True
    allowed: tuple[Network, ...] = ()

    @classmethod
    def of(cls, require_https: bool, allowed: Iterable[str]) -> DestinationRules:
        return cls(require_https, tuple(ipaddress.ip_network(n, strict=False) for n in allowed))

    def address_problem(self, address: Address) -> str | None:
        """Why webhooks may not reach `address`, or None when they may."""
        embedded = _embedded_ipv4(address)
        if any(address in network or (embedded is not None and embedded in network) for network in self.allowed):
            return None
        return _what_is_wrong(embedded if embedded is not None else address)

    def check_url(self, url: str) -> Target:
        """The URL's target if its form is acceptable; raises `RefusedDestination` otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise RefusedDestination(f"the URL cannot be read: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise RefusedDestination("the URL must be http or https")
        if scheme == "http" and self.require_https:
            raise RefusedDestination("the URL must be https")
        if parts.username is not None or parts.password is not None:
            raise RefusedDestination("the URL may not carry a user name or password")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise RefusedDestination("the URL has no host")
        port = port or (443 if scheme == "https" else 80)
        try:
            address: Address | None = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            self.check_addresses(host, [address])
            return Target(url, scheme, host, port, address)
        if host in METADATA_NAMES:
            raise RefusedDestination(f"{host} is a metadata service's name")
        last_label = host.rsplit(".", 1)[-1]
        if last_label.isdigit() or last_label.startswith("0x"):
            # Not a DNS name (no top-level domain is numeric) but an IP address in a legacy form (2130706433,
            # 0x7f.1, 127.1) that resolvers accept: only the standard forms are checked and allowed.
            raise RefusedDestination(f"{host} is an IP address in a non-standard form; write it as a.b.c.d or a name")
        return Target(url, scheme, host, port, None)

    def check_addresses(self, host: str, addresses: Sequence[Address]) -> None:
        """Refuses a host unless every address it resolves to may be reached (one bad answer is enough to refuse)."""
        if not addresses:
            raise RefusedDestination(f"{host} resolves to no address")
        for address in addresses:
            problem = self.address_problem(address)
            if problem is not None:
                if str(address) == host:
                    raise RefusedDestination(f"{host} is {problem}")
                raise RefusedDestination(f"{host} resolves to {problem}")
