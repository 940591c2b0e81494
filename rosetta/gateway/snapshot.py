"""Builds the gateway's RouteTable from the database (runs off the request path)."""

from django.contrib.auth import get_user_model

from rosetta.accounts.models import ApiToken
from rosetta.gateway.routes import Route, RouteTable
from rosetta.tasks.models import Task


def load_route_table() -> RouteTable:
    fields = ("id", "name", "owner_id", "phase", "endpoint_host", "endpoint_port")
    routes = {
        task_id: Route(task_id, name, owner_id, phase, (host, port) if port else None)
        for task_id, name, owner_id, phase, host, port in Task.objects.values_list(*fields)
    }
    users = get_user_model().objects.filter(is_active=True)
    staff = frozenset(users.filter(is_staff=True).values_list("id", flat=True))
    tokens = dict(ApiToken.objects.filter(user__is_active=True).values_list("digest", "user_id"))
    return RouteTable(routes=routes, staff_ids=staff, token_users=tokens)
