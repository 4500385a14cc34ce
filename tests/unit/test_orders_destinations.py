"""The rules for where webhooks may go: URL form, scheme, and every kind of address that must stay unreachable."""

from __future__ import annotations

import ipaddress

import pytest

from services.orders.destinations import DestinationRules, RefusedDestination
from services.orders.webhooks import resolve

PRODUCTION = DestinationRules(require_https=True)
DEV = DestinationRules(require_https=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://eproc.kai.id/hooks/ceper",
        "https://eproc.kai.id:8443/hooks?source=ceper",
        "https://EPROC.KAI.ID./hooks",
        "https://8.8.8.8/hooks",
        "https://[2001:4860:4860::8888]/hooks",
        "https://[::ffff:8.8.8.8]/hooks",  # IPv4-mapped, public inside
    ],
)
def test_public_https_urls_are_accepted(url):
    target = PRODUCTION.check_url(url)
    assert target.scheme == "https" and target.port in (443, 8443)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://eproc.kai.id/hooks", "must be https"),
        ("ftp://eproc.kai.id/hooks", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:pw@eproc.kai.id/hooks", "user name or password"),
        ("https:///hooks", "no host"),
        ("https://eproc.kai.id:99999/", "cannot be read"),
    ],
)
def test_url_forms_refused_in_production(url, reason):
    with pytest.raises(RefusedDestination, match=reason):
        PRODUCTION.check_url(url)


def test_plain_http_is_allowed_where_https_is_not_required():
    assert DEV.check_url("http://eproc.kai.id/hooks").port == 80
    with pytest.raises(RefusedDestination, match="loopback"):
        DEV.check_url("http://127.0.0.1:8002/internal/jobs")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.10", "private"),
        ("[fd12:3456::1]", "private"),
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("169.254.10.10", "link-local"),
        ("[fe80::1]", "link-local"),
        ("224.0.0.251", "multicast"),
        ("233.252.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("240.0.0.1", "reserved|private"),
        ("255.255.255.255", "private|reserved"),  # broadcast
        ("192.0.2.10", "private|not a public"),  # documentation range
        ("169.254.169.254", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("100.100.100.200", "metadata"),
        ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
        ("[::ffff:169.254.169.254]", "metadata"),
        ("[::ffff:10.1.2.3]", "private"),
        ("[64:ff9b::a00:1]", "private"),  # NAT64 of 10.0.0.1
        ("[2002:7f00:1::]", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_addresses_that_webhooks_may_not_reach(host, reason):
    with pytest.raises(RefusedDestination, match=reason):
        DEV.check_url(f"http://{host}:8080/x")


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal.", "metadata.goog", "metadata"])
def test_metadata_names_are_refused_before_resolving(host):
    with pytest.raises(RefusedDestination, match="metadata service"):
        PRODUCTION.check_url(f"https://{host}/x")


def test_names_are_left_to_the_resolver():
    """`localhost` is refused for what it resolves to, like any name: see the resolver tests below."""
    target = PRODUCTION.check_url("https://localhost/x")
    assert target.host == "localhost" and target.address is None


@pytest.mark.parametrize("host", ["2130706433", "017700000001", "0x7f000001", "0x7f.1", "127.1", "10.1", "3232235777"])
def test_ip_addresses_in_legacy_forms_are_refused(host):
    with pytest.raises(RefusedDestination, match="non-standard form"):
        DEV.check_url(f"http://{host}/x")


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "017700000001"])
async def test_the_resolver_reads_legacy_forms_as_loopback_and_the_address_rule_refuses_them(host):
    """Were such a host to get past the form check, the send-time check on what it resolves to still refuses."""
    addresses = await resolve(host, 80)
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(RefusedDestination, match="resolves to a loopback"):
        DEV.check_addresses(host, addresses)


async def test_localhost_resolves_to_loopback_and_is_refused_at_send_time():
    addresses = await resolve("localhost", 80)
    assert addresses and all(a.is_loopback for a in addresses)
    with pytest.raises(RefusedDestination, match="resolves to a loopback"):
        PRODUCTION.check_addresses("localhost", addresses)


def test_one_bad_address_among_good_ones_refuses_the_host():
    good, bad = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.7")
    PRODUCTION.check_addresses("eproc.kai.id", [good])
    with pytest.raises(RefusedDestination, match="resolves to a private address"):
        PRODUCTION.check_addresses("eproc.kai.id", [good, bad])
    with pytest.raises(RefusedDestination, match="no address"):
        PRODUCTION.check_addresses("eproc.kai.id", [])


def test_the_refusal_does_not_echo_the_resolved_address():
    with pytest.raises(RefusedDestination) as refused:
        PRODUCTION.check_addresses("intranet.kai.id", [ipaddress.ip_address("10.20.30.40")])
    assert "10.20.30.40" not in str(refused.value)


def test_networks_the_operator_trusts_are_allowed_and_only_those():
    rules = DestinationRules.of(require_https=False, allowed=["127.0.0.1/32", "10.8.0.0/16"])
    rules.check_url("http://127.0.0.1:9000/hooks")
    rules.check_url("http://[::ffff:127.0.0.1]:9000/hooks")
    rules.check_addresses("receiver.test", [ipaddress.ip_address("10.8.1.1")])
    with pytest.raises(RefusedDestination, match="loopback"):
        rules.check_url("http://127.0.0.2:9000/hooks")
    with pytest.raises(RefusedDestination, match="private"):
        rules.check_addresses("receiver.test", [ipaddress.ip_address("10.9.0.1")])


async def test_resolve_gives_each_address_once():
    addresses = await resolve("127.0.0.1", 443)
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
