"""Who counts as one client for the per-client caps of the gateway and the SSH door."""

import pytest

from rosetta.gateway.clients import cap_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client of a dual-stack socket
        ("::ffff:c000:207", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one host usually has a whole /64
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another client
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),  # a zone is no part of the address
        ("unix", "unix"),  # the gateway's unix socket
        ("?", "?"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_cap_key(address, key):
    assert cap_key(address) == key
