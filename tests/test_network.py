"""Tests for services/network.py: the caller's address, seen through exactly the trusted proxies."""

from __future__ import annotations

import pytest

from services.network import address_block, client_address

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


class TestTrustedProxies:
    CASES = (
        ("10.0.0.1", ["1.2.3.4"], 0, "10.0.0.1"),  # no proxy trusted: the header is ignored
        ("10.0.0.1", ["1.2.3.4"], 1, "1.2.3.4"),  # one proxy (a Space)
        ("10.0.0.1", ["6.6.6.6, 1.2.3.4"], 1, "1.2.3.4"),  # a forged left entry is ignored
        ("10.0.0.1", ["1.2.3.4, 5.6.7.8"], 2, "1.2.3.4"),  # two proxies
        ("10.0.0.1", ["6.6.6.6, 1.2.3.4, 5.6.7.8"], 2, "1.2.3.4"),  # two proxies, one forged entry
        ("10.0.0.1", ["6.6.6.6", "1.2.3.4"], 1, "1.2.3.4"),  # header lines are taken together, in order
        ("10.0.0.1", ["6.6.6.6, 1.2.3.4", "5.6.7.8"], 2, "1.2.3.4"),  # entries across lines count as one list
        ("10.0.0.1", ["1.2.3.4", "5.6.7.8, 9.9.9.9"], 3, "1.2.3.4"),  # three proxies over two lines
        ("10.0.0.1", ["1.2.3.4"], 2, "10.0.0.1"),  # fewer entries than proxies: the peer
        ("10.0.0.1", [], 1, "10.0.0.1"),  # header missing: the peer
        ("10.0.0.1", ["", " , "], 1, "10.0.0.1"),  # only empty entries: the peer
        ("10.0.0.1", ["1.2.3.4,,"], 1, "1.2.3.4"),  # empty entries are not hops
        (None, [], 0, "unknown"),  # no peer at all
        (None, ["1.2.3.4"], 2, "unknown"),  # no peer, too few entries
        ("", [], 0, "unknown"),  # an empty peer
    )

    @pytest.mark.parametrize(("peer", "forwarded_for", "proxies", "expected"), CASES)
    def test_address(self, peer, forwarded_for, proxies, expected):
        """The address the outermost trusted proxy saw, never one the caller wrote."""
        assert client_address(peer, forwarded_for, trusted_proxies=proxies) == expected

    def test_any_iterable_of_lines(self):
        """The header lines may come as any iterable, such as a generator over the request's headers."""
        lines = (line for line in ["6.6.6.6", "1.2.3.4"])
        assert client_address("10.0.0.1", lines, trusted_proxies=1) == "1.2.3.4"


class TestNormalisation:
    CASES = (
        ("1.2.3.4:5678", "1.2.3.4"),  # IPv4 with a port
        (" 1.2.3.4 ", "1.2.3.4"),  # spaces
        ("[::1]:8080", "::1"),  # bracketed IPv6 with a port
        ("[2001:db8::1]", "2001:db8::1"),  # bracketed IPv6
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),  # IPv6 written in full, upper case
        ("unknown", "unknown"),  # the word some proxies write
        ("not an address", "not an address"),  # garbage still counts as one caller
        ("x" * 100, "x" * 64),  # long garbage is shortened
        ("[]", "unknown"),  # nothing inside the brackets
        ("host:port:extra", "host:port:extra"),  # not an address, kept
    )

    @pytest.mark.parametrize(("entry", "expected"), CASES)
    def test_forwarded_entry(self, entry, expected):
        """A forwarded entry is read as a plain address, so one caller has one key whatever the formatting."""
        assert client_address("10.0.0.1", [entry], trusted_proxies=1) == expected

    @pytest.mark.parametrize(("peer", "expected"), [("127.0.0.1", "127.0.0.1"), ("::0001", "::1"), ("[::1]:1", "::1")])
    def test_peer(self, peer, expected):
        """The socket peer is normalised the same way."""
        assert client_address(peer, [], trusted_proxies=0) == expected


class TestAddressBlock:
    CASES = (
        ("203.0.113.5", "203.0.113.5"),  # IPv4: the address itself
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # IPv6: its /64
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # another address of the same /64, the same caller
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64, another caller
        ("::ffff:203.0.113.5", "203.0.113.5"),  # IPv4-mapped: the IPv4 address
        ("unknown", "unknown"),  # no peer: its own block
    )

    @pytest.mark.parametrize(("address", "expected"), CASES)
    def test_block(self, address, expected):
        """One IPv6 host holds a /64 (its privacy addresses change within it): the limits count the /64."""
        assert address_block(address) == expected
