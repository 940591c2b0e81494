"""The gateway's in-memory view of who may reach which task, and where it listens.

The gateway never queries the database on a request: it answers from a ``RouteTable``
snapshot that is reloaded whenever the controller or the API signals a change (and on a
slow fallback poll). A snapshot is immutable; reloading swaps the whole object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rosetta.computing.contract import Address
from rosetta.tasks.access import may_reach
from rosetta.tasks.phases import FINAL_PHASE_NAMES


@dataclass(frozen=True, slots=True)
class Route:
    task_id: str  # also the first label of the task's origin
    name: str  # the task's human name, for the gateway's own pages
    owner_id: int
    phase: str  # created, queued, starting, running, stopping, stopped, exited, failed
    upstream: tuple[str, int] | None  # where the interface listens as its resource sees it, once known
    # Where on this machine to connect for ``upstream`` (an SSH forward, say); None: connect to it directly.
    reach: Callable[[str, int], Awaitable[Address]] | None = None
    # The header line carrying the task's secret (rosetta.tasks.secret), sent instead of any
    # Authorization the client sent; None: the client's own goes through. Kept in memory only.
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASE_NAMES


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: dict[str, Route] = field(default_factory=dict)
    staff_ids: frozenset[int] = frozenset()
    # SHA-256 hex digest of each active API token -> the user it belongs to.
    token_users: dict[str, int] = field(default_factory=dict)
    # Every active user -> their access epoch: cookies of other epochs, or of users not here, open nothing.
    epochs: dict[int, int] = field(default_factory=dict)
    # Digests of staff members' tokens made with the admin scope: only these act as staff (a staff
    # member's other tokens open what an ordinary user's would).
    admin_tokens: frozenset[str] = frozenset()

    def may_access(self, user_id: int, route: Route) -> bool:
        return may_reach(user_id, route.owner_id, user_id in self.staff_ids)

    def may_access_by_token(self, user_id: int, as_staff: bool, route: Route) -> bool:
        return may_reach(user_id, route.owner_id, as_staff)
