"""The outbound policy as a table: which addresses the default refuses, in every spelling, and
what the administrator's networks and host names let through."""

from __future__ import annotations

import socket

import pytest

from service.domain.outbound import NOT_ALLOWED, STRICT, OutboundPolicy, build_policy, is_public
from service.errors import ConnectionNotAllowed, InvalidInput
from service.protocols import outbound
from service.usecases.rate_limit import RateLimiter

REFUSED = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # Alibaba metadata
    "169.254.169.254",  # AWS / GCP / Azure metadata
    "169.254.1.1",  # link-local
    "0.0.0.0",  # noqa: S104  (unspecified: a value to refuse, not a bind)
    "0.1.2.3",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.0.192",  # Oracle metadata
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of loopback
    "2002:7f00:1::1",  # 6to4 of loopback
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "fc00::1",  # unique local
    "fd00:ec2::254",  # AWS IPv6 metadata
    "fe80::1",  # link-local
    "fe80::1%lo",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "2001::1",  # Teredo
    "100::1",  # discard
    "4000::1",  # outside global unicast
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_the_default_refuses_non_public_addresses(address: str) -> None:
    assert not is_public(address)
    assert not STRICT.allows(address, "mail.example.com")


@pytest.mark.parametrize("address", PUBLIC)
def test_the_default_allows_public_addresses(address: str) -> None:
    assert is_public(address)
    assert STRICT.allows(address, "mail.example.com")


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "::ffff:127.0.0.1"])
def test_odd_spellings_resolve_to_loopback_and_are_refused(spelling: str) -> None:
    """getaddrinfo normalises them; the policy judges what it returns, so no spelling slips through."""
    with pytest.raises(ConnectionNotAllowed) as raised:
        outbound.resolve(spelling, 25, STRICT)
    assert raised.value.message == NOT_ALLOWED


def test_a_name_that_resolves_to_loopback_is_refused_and_allowed_by_name() -> None:
    with pytest.raises(ConnectionNotAllowed, match="not allowed by your administrator's policy"):
        outbound.resolve("localhost", 25, STRICT)
    targets = outbound.resolve("localhost", 25, OutboundPolicy.parse(["LOCALHOST."]))
    assert {t.ip for t in targets} <= {"127.0.0.1", "::1"}
    assert targets


def test_networks_single_addresses_and_host_names() -> None:
    policy = OutboundPolicy.parse(["10.1.2.0/24", "192.168.7.7", "fd12::/16", "mail.corp.example", "*.lan.example"])
    assert policy.allows("10.1.2.200", "anything.example")
    assert not policy.allows("10.1.3.1", "anything.example")
    assert policy.allows("192.168.7.7", "x")
    assert not policy.allows("192.168.7.8", "x")
    assert policy.allows("fd12:3::1", "x")
    assert policy.allows("::ffff:10.1.2.3", "x"), "IPv4-mapped is judged as the IPv4 address"
    assert policy.allows("10.9.9.9", "Mail.Corp.Example."), "a named host may resolve to anything"
    assert policy.allows("10.9.9.9", "imap.lan.example")
    assert policy.allows("10.9.9.9", "a.b.lan.example")
    assert not policy.allows("10.9.9.9", "lan.example"), "*. means subdomains only"
    assert not policy.allows("10.9.9.9", "evillan.example")
    assert not policy.allows("10.9.9.9", "mail.corp.example.evil.test")


def test_metadata_needs_an_entry_for_exactly_that_address() -> None:
    covering = OutboundPolicy.parse(["169.254.0.0/16", "metadata.google.internal", "fd00::/8"])
    assert covering.allows("169.254.1.1", "x")
    assert not covering.allows("169.254.169.254", "x")
    assert not covering.allows("169.254.169.254", "metadata.google.internal")
    assert not covering.allows("fd00:ec2::254", "x")
    assert OutboundPolicy.parse(["169.254.169.254"]).allows("169.254.169.254", "x")


def test_build_policy_merges_the_setting_and_the_domain() -> None:
    policy = build_policy("127.0.0.0/8, ::1/128", "# comment\n\n*.corp.example\n10.0.0.0/8")
    assert policy.allows("127.0.0.1", "x")
    assert policy.allows("::1", "x")
    assert policy.allows("10.2.3.4", "x")
    assert policy.allows("172.16.0.1", "smtp.corp.example")
    assert not policy.allows("172.16.0.1", "smtp.other.example")
    assert build_policy("", "") == STRICT


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "*", "a/b"])
def test_bad_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidInput):
        OutboundPolicy.parse([entry])


def test_every_refusal_is_the_same_sentence() -> None:
    """A private address and an address outside the allow list look the same to the user."""
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 25))]
    messages = set()
    for policy in (STRICT, OutboundPolicy.parse(["192.168.0.0/16"])):
        with pytest.raises(ConnectionNotAllowed) as raised:
            outbound.allowed_targets(infos, "internal.example", policy)
        messages.add(raised.value.message)
    assert messages == {NOT_ALLOWED}


def test_the_first_allowed_address_is_kept_and_private_ones_dropped() -> None:
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 25)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 25)),
    ]
    assert [t.ip for t in outbound.allowed_targets(infos, "mixed.example", STRICT)] == ["93.184.215.14"]


def test_the_rate_limiter_is_a_sliding_window() -> None:
    now = [1000.0]
    limiter = RateLimiter(3, 60.0, clock=lambda: now[0])
    assert [limiter.retry_after("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.retry_after("u") == pytest.approx(60.0)
    assert limiter.retry_after("other") == 0.0
    now[0] += 30
    assert limiter.retry_after("u") == pytest.approx(30.0)
    now[0] += 30.5
    assert limiter.retry_after("u") == 0.0
