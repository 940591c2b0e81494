"""Admission and fairness: which connections the gateway accepts, and whose request goes next.

- A gateway process holds at most ``max_connections`` client connections, and one client at
  most ``max_connections_per_client`` of them. A client is its address, an IPv6 one by its /64
  (``clients.cap_key``); each connection of a trusted TLS terminator counts on its own, since it
  carries many clients, whom the terminator limits.
- One client may have ``max_in_flight_per_client`` requests waiting for the first bytes of their
  response. Its further requests wait their turn (``ClientShare.waiting``), longest waiting
  first, so one client's many busy connections cannot starve everyone else's.

The relay (rosetta.gateway.relay) holds the socket side: a connection ``admit``-ted keeps its
``ClientShare``, takes one of its slots for each request it forwards, gives it back when the
response begins, and ``take_turn`` is called on it when a slot was set aside for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from rosetta.gateway.clients import cap_key

log = logging.getLogger("rosetta.gateway.proxy")


class Waiter(Protocol):
    def take_turn(self) -> None:
        """A slot of its client's share was set aside for it: go on with its next request."""


class ClientShare:
    """What one client holds of the gateway: its connections, and how many of them wait for a
    response (``in_flight``, at most ``limit``; the others wait their turn)."""

    __slots__ = ("address", "connections", "in_flight", "limit", "full", "waiting")

    def __init__(self, address: str, limit: int) -> None:
        self.address = address
        self.connections = 0
        self.in_flight = 0
        self.limit = limit
        self.full = False
        self.waiting: deque[Waiter] = deque()

    def take(self) -> None:
        self.in_flight += 1
        self.full = self.in_flight >= self.limit

    def give_back(self) -> None:
        self.in_flight -= 1
        if self.full:  # never more than the limit in flight: one fewer is room again
            self.full = False
            if self.waiting:
                self.pass_turn()

    def pass_turn(self) -> None:
        """The slot just given back goes to the longest waiting connection (run soon, not
        from inside the callback that freed it)."""
        self.take()
        asyncio.get_running_loop().call_soon(self.waiting.popleft().take_turn)


class Admission:
    """The connections of one gateway process, counted per client."""

    def __init__(self, max_connections: int, max_connections_per_client: int, max_in_flight_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.max_in_flight_per_client = max_in_flight_per_client
        self.connections: set = set()
        self.shares: dict[str, ClientShare] = {}
        self._refused_since_warning = 0

    def admit(self, connection: object, address: str, via_terminator: bool = False) -> ClientShare | None:
        """The share the new ``connection`` from ``address`` counts in, or None if over a limit."""
        client = f"{address} #{id(connection)}" if via_terminator else cap_key(address)
        share = self.shares.get(client)
        if len(self.connections) >= self.max_connections or (
            share is not None and share.connections >= self.max_connections_per_client
        ):
            self._refused_since_warning += 1
            if self._refused_since_warning in (1, 1000):  # a flood must not flood the log
                log.warning("gateway: connection limit reached; refusing new connections (%s)", client)
            return None
        if share is None:
            share = self.shares[client] = ClientShare(client, self.max_in_flight_per_client)
        share.connections += 1
        self.connections.add(connection)
        self._refused_since_warning = 0
        return share

    def release(self, connection: object, share: ClientShare) -> None:
        self.connections.discard(connection)
        share.connections -= 1
        if not share.connections:
            del self.shares[share.address]
