"""The relay's connection states, and the protocol it asks of the gateway. The bytes themselves
are tested through real sockets (tests/integration/test_gateway_*.py), where every transition
the relay makes is checked by ``ClientConnection.move``."""

import inspect

import pytest

from rosetta.gateway import proxy, relay
from rosetta.gateway.relay import NEXT_STATES, ClientConnection, State


def test_every_state_can_close_and_closed_is_final():
    assert NEXT_STATES[State.CLOSED] == frozenset()
    assert all(State.CLOSED in NEXT_STATES[state] for state in State if state is not State.CLOSED)


def test_states_that_read_no_further_request_never_go_back_to_reading_one():
    for state in State:
        if state >= State.LAST_BODY:
            assert all(after >= State.LAST_BODY for after in NEXT_STATES[state]), state


def test_a_tunnel_and_an_answer_of_the_gateways_own_only_close():
    assert NEXT_STATES[State.SWITCHED] == NEXT_STATES[State.ANSWERED] == frozenset({State.CLOSED})


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (State.CLOSED, State.READING_HEAD),
        (State.ANSWERED, State.RELAYING_BODY),
        (State.SWITCHED, State.READING_HEAD),
        (State.READING_LOGIN, State.RELAYING_BODY),
        (State.FINAL, State.QUEUED),
    ],
)
def test_an_illegal_transition_is_a_bug(before, after):
    connection = ClientConnection(gateway=None)
    connection.state = before
    with pytest.raises(AssertionError, match=f"{before.name} -> {after.name}"):
        connection.move(after)


def test_a_legal_transition_moves():
    connection = ClientConnection(gateway=None)
    connection.move(State.RELAYING_BODY)
    connection.move(State.READING_HEAD)
    assert connection.state is State.READING_HEAD and not connection.closed


def test_the_gateway_has_all_the_relay_asks_of_it_and_the_relay_asks_no_more():
    asked = set(inspect.get_annotations(relay.Gateway)) | {
        name for name, member in vars(relay.Gateway).items() if inspect.isfunction(member) and not name.startswith("_")
    }
    gateway = proxy.Gateway(proxy.GatewayConfig(listen=[], tasks_domain="localhost", platform_upstream="/x",
                                                public_url="http://localhost:8000", key=b"k" * 32))  # fmt: skip
    assert not [name for name in asked if not hasattr(gateway, name)]
    source = inspect.getsource(relay)
    used = {name for name in asked if f"gateway.{name}" in source or f".gateway.{name}" in source}
    assert used == asked  # nothing in the protocol that the relay does not use
