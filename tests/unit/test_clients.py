"""Client identity for rate limits: proxies are believed only when configured; keys are
salted hashes of the reduced address, never the address."""

from __future__ import annotations

from services.shared.clients import client_address, client_key, parse_networks, reduce_address

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def test_forwarded_for_ignored_from_an_untrusted_peer() -> None:
    assert client_address("198.51.100.7", "203.0.113.9", PROXIES) == "198.51.100.7"
    assert client_address("198.51.100.7", "203.0.113.9", ()) == "198.51.100.7"


def test_forwarded_for_believed_from_a_trusted_proxy_rightmost_untrusted_hop() -> None:
    # a client can prepend anything; only the hop our proxy saw counts
    xff = "1.2.3.4, 203.0.113.9, 10.1.1.1"
    assert client_address("10.0.0.2", xff, PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.2", "not-an-ip", PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", None, PROXIES) == "10.0.0.2"


def test_unusable_peer() -> None:
    assert client_address(None, None, ()) == "unknown"
    assert client_address("testclient", "1.2.3.4", PROXIES) == "unknown"


def test_ipv6_clients_are_reduced_to_their_64() -> None:
    assert reduce_address("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert reduce_address("198.51.100.7") == "198.51.100.7"
    a = client_key(b"s", "2001:db8:1:2:aaaa::1")
    b = client_key(b"s", "2001:db8:1:2:bbbb::9")
    assert a == b
    assert a != client_key(b"s", "2001:db8:1:3::1")


def test_keys_hide_the_address_and_depend_on_salt_and_scope() -> None:
    key = client_key(b"salt", "198.51.100.7", "upload")
    assert "198" not in key and len(key) == 32
    assert key != client_key(b"other", "198.51.100.7", "upload")
    assert key != client_key(b"salt", "198.51.100.7", "report")
