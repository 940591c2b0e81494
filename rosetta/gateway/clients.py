"""Who counts as one client for the per-client caps of the gateway and the SSH door."""

from __future__ import annotations

import socket

_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def cap_key(address: str) -> str:
    """The key a connection from ``address`` counts under: an IPv4 address as it is (an
    IPv4-mapped IPv6 address as its IPv4), an IPv6 address by its /64 — what one host, or one
    home, is usually given, so a client cannot take a fresh cap with each of its 2^64
    addresses. Anything else (a unix socket) as it is. Computed for every connection the
    gateway accepts, so with the socket module's parser, not ipaddress (50 times slower)."""
    if ":" not in address:
        return address  # IPv4, or "unix"
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])  # fe80::1%eth0 is fe80::1
    except OSError:
        return address
    if packed[:12] == _IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"
