import pytest
from django.test import RequestFactory

from rosetta.web.throttle import client_address, counters


@pytest.mark.parametrize(
    ("remote", "counted_as"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one host usually has a whole /64
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("", "local"),  # straight on the unix socket, without the gateway
        ("unix", "unix"),
    ],
)
def test_client_address(remote, counted_as):
    request = RequestFactory().get("/login/", REMOTE_ADDR=remote)
    assert client_address(request) == counted_as


def test_counters_keep_no_attempted_username(settings):
    account, address = counters("my secret password typed as a name", "192.0.2.7")
    assert "secret" not in account.key and "192.0.2.7" not in address.key
    assert (account.limit, address.limit) == (settings.LOGIN_FAILURES_PER_ACCOUNT, settings.LOGIN_FAILURES_PER_ADDRESS)
    assert counters("ada", "192.0.2.7")[0] != counters("Ada", "192.0.2.7")[0]
    assert counters("ada", "192.0.2.7")[1] == counters("grace", "192.0.2.7")[1]
