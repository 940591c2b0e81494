"""Admission and fairness of the gateway: connection caps per process and per client, and turns
between one client's requests when it has as many in flight as it may."""

import asyncio

from rosetta.gateway.admission import Admission, ClientShare


class Connection:
    def __init__(self, name: str, turns: list[str]) -> None:
        self.name = name
        self.turns = turns

    def take_turn(self) -> None:
        self.turns.append(self.name)


def test_connections_are_capped_per_process_and_per_client():
    admission = Admission(max_connections=4, max_connections_per_client=2, max_in_flight_per_client=8)
    first, second, third = object(), object(), object()
    share = admission.admit(first, "192.0.2.1")
    assert share is not None and admission.admit(second, "192.0.2.1") is share and share.connections == 2
    assert admission.admit(third, "192.0.2.1") is None  # the client's cap
    assert admission.admit(third, "192.0.2.2") is not None  # another client
    assert admission.admit(object(), "192.0.2.3") is not None
    assert admission.admit(object(), "192.0.2.4") is None  # the process's cap
    admission.release(first, share)
    assert admission.admit(object(), "192.0.2.1") is share and share.connections == 2


def test_a_client_is_its_ipv6_64_and_an_ipv4_mapped_address_is_ipv4():
    admission = Admission(max_connections=100, max_connections_per_client=2, max_in_flight_per_client=8)
    assert admission.admit(object(), "2001:db8:1:2::1") is admission.admit(object(), "2001:db8:1:2:ffff::9")
    assert admission.admit(object(), "2001:db8:1:2::3") is None  # a fresh address of the same /64
    assert admission.admit(object(), "2001:db8:1:3::1") is not None
    assert admission.admit(object(), "::ffff:192.0.2.1") is admission.admit(object(), "192.0.2.1")


def test_each_connection_of_a_trusted_terminator_counts_on_its_own():
    admission = Admission(max_connections=100, max_connections_per_client=1, max_in_flight_per_client=8)
    shares = [admission.admit(object(), "10.0.0.1", via_terminator=True) for _ in range(3)]
    assert None not in shares and len({id(share) for share in shares}) == 3


def test_the_last_connection_of_a_client_takes_its_share_away():
    admission = Admission(max_connections=100, max_connections_per_client=2, max_in_flight_per_client=8)
    connection = object()
    share = admission.admit(connection, "192.0.2.1")
    admission.release(connection, share)
    assert admission.shares == {} and admission.connections == set()


def test_a_full_share_passes_freed_slots_to_the_longest_waiting_connection_in_turn():
    async def scenario() -> tuple[list[str], int]:
        turns: list[str] = []
        share = ClientShare("192.0.2.1", limit=2)
        share.take()
        share.take()
        assert share.full
        share.waiting.extend([Connection("first", turns), Connection("second", turns)])
        share.give_back()  # a slot for the first waiting, taken for it at once
        assert share.full and share.in_flight == 2 and turns == []  # its turn runs soon, not inside give_back
        await asyncio.sleep(0)
        share.give_back()
        await asyncio.sleep(0)
        return turns, share.in_flight

    turns, in_flight = asyncio.run(scenario())
    assert turns == ["first", "second"] and in_flight == 2


def test_a_share_below_its_limit_passes_no_turn():
    share = ClientShare("192.0.2.1", limit=3)
    share.take()
    share.give_back()
    assert not share.full and share.in_flight == 0
