"""Builds the gateway's RouteTable from the database (runs off the request path)."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from rosetta.accounts.models import ApiToken
from rosetta.computing.backends import transport_for
from rosetta.computing.models import Resource
from rosetta.gateway.routes import Route, RouteTable
from rosetta.tasks.models import Task

FINISHED_TASKS_SHOWN_FOR = timedelta(days=1)


def _connectors() -> dict:
    """Per resource, how to reach what its tasks listen on; resources reached directly are left out."""
    connectors = {}
    for resource in Resource.objects.all():
        transport = transport_for(resource)
        if not transport.direct:
            connectors[resource.id] = transport.reach
    return connectors


def _routable_tasks():
    """Active tasks, and recently finished ones (whose origin then says so rather than 404):
    the table stays as large as what users may still open, not as the history."""
    recent = Q(finished__isnull=True) | Q(finished__gte=timezone.now() - FINISHED_TASKS_SHOWN_FOR)
    return Task.objects.filter(recent)


def load_route_table() -> RouteTable:
    fields = ("id", "name", "owner_id", "phase", "endpoint_host", "endpoint_port", "resource_id")
    reach = _connectors()
    routes = {
        task_id: Route(task_id, name, owner_id, phase, (host, port) if port else None, reach.get(resource_id))
        for task_id, name, owner_id, phase, host, port, resource_id in _routable_tasks().values_list(*fields)
    }
    users = get_user_model().objects.filter(is_active=True)
    staff = frozenset(users.filter(is_staff=True).values_list("id", flat=True))
    tokens = dict(ApiToken.objects.filter(user__is_active=True).values_list("digest", "user_id"))
    return RouteTable(routes=routes, staff_ids=staff, token_users=tokens)
