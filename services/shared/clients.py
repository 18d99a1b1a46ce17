"""Who is the client, privately: the address is reduced and hashed with the secret salt, and
X-Forwarded-For is believed only when the direct peer is a configured proxy."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _addr(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    addr = _addr(peer or "")
    if addr is None:
        return "unknown"
    if forwarded_for and any(addr in net for net in proxies):
        for hop in reversed(forwarded_for.split(",")):
            hop_addr = _addr(hop)
            if hop_addr is None:
                break
            if not any(hop_addr in net for net in proxies):
                return str(hop_addr)
    return str(addr)


def reduce_address(address: str) -> str:
    """IPv6 clients get a /64 each (one household or phone), IPv4 the single address."""
    addr = _addr(address)
    if addr is None:
        return address
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def client_key(salt: bytes, address: str, scope: str = "") -> str:
    """A keyed hash of the reduced address: stable per client, never the address itself."""
    msg = f"{scope}|{reduce_address(address)}".encode()
    return hmac.new(salt, msg, hashlib.sha256).hexdigest()[:32]
