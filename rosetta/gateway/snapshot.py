"""Builds the gateway's RouteTable from the database (runs off the request path)."""

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from rosetta.accounts.models import ApiToken
from rosetta.accounts.tokens import ADMIN, TASKS
from rosetta.computing.backends import transport_for
from rosetta.computing.contract import Address
from rosetta.computing.errors import ComputingError, Unreachable
from rosetta.computing.models import Resource
from rosetta.gateway.routes import Route, RouteTable
from rosetta.tasks.models import Task
from rosetta.tasks.phases import ACTIVE_PHASE_NAMES, FINAL_PHASE_NAMES
from rosetta.tasks.secret import authorization_header

# Ended tasks whose origin still says so (a page left open on one): the latest few, not the history.
FINISHED_TASKS_SHOWN_FOR = timedelta(days=1)
MAX_FINISHED_ROUTES = 100
_HTTP = frozenset({"http", "https"})  # interfaces that are sent the task's secret with every request
log = logging.getLogger(__name__)


def _connectors(needed: set[tuple[int, int]]) -> dict:
    """How to reach what tasks listen on, per (resource, owner) among ``needed``: through the
    resource's transport (its SSH connection, or for resources where users run as themselves,
    the owner's). Resources reached directly are left out; those that cannot be reached now get
    a connector that says why (never the endpoint as it is: on another machine's loopback, that
    address here is this machine's)."""
    resources = {resource.id: resource for resource in Resource.objects.filter(id__in={r for r, _ in needed})}
    owners = get_user_model().objects.in_bulk({owner for _, owner in needed})
    connectors = {}
    for resource_id, owner_id in needed:
        resource = resources[resource_id]
        try:
            reach = connector(resource, owners.get(owner_id))
        except ComputingError as error:  # the owner's account there is refused, say
            log.warning("gateway: cannot reach the tasks of resource %s: %s", resource.name, error)
            reach = _unreachable(str(error))
        except Exception:  # one resource's broken settings must not keep the others' routes out
            log.exception("gateway: cannot reach the tasks of resource %s", resource.name)
            reach = _unreachable(f"{resource.name} cannot be reached now.")
        if reach is not None:
            connectors[(resource_id, owner_id)] = reach
    return connectors


def _unreachable(reason: str) -> Callable[[str, int], Awaitable[Address]]:
    async def reach(host: str, port: int) -> Address:
        raise Unreachable(reason)

    return reach


def connector(resource: Resource, owner) -> Callable[[str, int], Awaitable[Address]] | None:
    """How to reach what ``owner``'s tasks on ``resource`` listen on: through the resource's
    transport (its SSH connection, or the owner's where users run as themselves), or None to
    connect to the endpoint as it is (this machine). The HTTP gateway and the SSH door both
    connect through it."""
    transport = transport_for(resource, owner if resource.per_user else None)
    return None if transport.direct else transport.reach


def _routable_tasks() -> list[tuple]:
    """Every active task (its origin answers from the moment it is created), and the few that
    ended last, so that a page still open on one says it ended rather than "no such task". The
    table stays as large as what can be routed, however long the history grows."""
    fields = ("id", "name", "owner_id", "phase", "endpoint_host", "endpoint_port", "resource_id")
    fields += ("software__interface_protocol", "software__own_authorization")
    active = Task.objects.filter(phase__in=ACTIVE_PHASE_NAMES)
    ended = Task.objects.filter(phase__in=FINAL_PHASE_NAMES, finished__gte=timezone.now() - FINISHED_TASKS_SHOWN_FOR)
    return [*active.values_list(*fields), *ended.order_by("-finished").values_list(*fields)[:MAX_FINISHED_ROUTES]]


def load_route_table() -> RouteTable:
    rows = _routable_tasks()
    reach = _connectors({(resource_id, owner_id) for _, _, owner_id, _, _, port, resource_id, *_ in rows if port})
    routes = {
        task_id: Route(
            task_id,
            name,
            owner_id,
            phase,
            (host, port) if port else None,
            reach.get((resource_id, owner_id)),
            authorization_header(task_id) if protocol in _HTTP and not own_authorization else None,
        )
        for task_id, name, owner_id, phase, host, port, resource_id, protocol, own_authorization in rows
    }
    users = get_user_model().objects.filter(is_active=True)
    staff = frozenset(users.filter(is_staff=True).values_list("id", flat=True))
    # Only tokens made to use tasks open their interfaces (a read-only token's holder runs no code in them).
    tokens, admin_tokens = {}, set()
    for digest, user_id, scopes in ApiToken.objects.usable().values_list("digest", "user_id", "scopes"):
        held = scopes.split()
        if TASKS in held:
            tokens[digest] = user_id
            if ADMIN in held and user_id in staff:
                admin_tokens.add(digest)
    epochs = {user_id: epoch or 0 for user_id, epoch in users.values_list("id", "access_epoch__value")}
    return RouteTable(
        routes=routes, staff_ids=staff, token_users=tokens, epochs=epochs, admin_tokens=frozenset(admin_tokens)
    )
