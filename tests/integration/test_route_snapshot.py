"""What the gateway learns from the database."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from rosetta.accounts.models import ApiToken
from rosetta.accounts.tokens import hash_token
from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.gateway.snapshot import load_route_table
from rosetta.tasks.models import Task

pytestmark = pytest.mark.django_db


def test_route_table_holds_active_and_recent_tasks_tokens_and_staff():
    users = get_user_model().objects
    owner, admin = users.create_user("owner"), users.create_user("admin", is_staff=True)
    _, secret = ApiToken.objects.create_for(owner)
    software = Software.objects.create(name="hello", image="localhost/rosetta/hello")
    resource = Resource.objects.create(name="local")

    def make(name, **fields):
        return Task.objects.create(owner=owner, name=name, software=software, resource=resource, **fields)

    running = make("running", phase="running", endpoint_host="127.0.0.1", endpoint_port=41000)
    starting = make("starting", phase="starting")
    recent = make("recent", phase="stopped", finished=timezone.now() - timedelta(hours=1))
    old = make("old", phase="exited", finished=timezone.now() - timedelta(days=3))

    table = load_route_table()

    assert set(table.routes) == {running.id, starting.id, recent.id}
    assert table.routes[running.id].upstream == ("127.0.0.1", 41000) and table.routes[starting.id].upstream is None
    assert table.routes[recent.id].is_final and old.id not in table.routes
    assert table.token_users == {hash_token(secret): owner.id}
    assert table.staff_ids == {admin.id}
    assert table.may_access(admin.id, table.routes[running.id]) and table.may_access(owner.id, table.routes[running.id])


def test_route_table_knows_the_access_epoch_of_active_users_only():
    from rosetta.accounts.models import AccessEpoch
    from rosetta.accounts.signals import end_task_access

    users = get_user_model().objects
    fresh, logged_out, deactivated = users.create_user("fresh"), users.create_user("out"), users.create_user("gone")
    end_task_access(logged_out.id)
    end_task_access(logged_out.id)
    deactivated.is_active = False
    deactivated.save()  # deactivation moves the epoch on too: reactivating must not revive old cookies

    table = load_route_table()

    assert table.epochs == {fresh.id: 0, logged_out.id: 2}
    assert AccessEpoch.objects.current(deactivated.id) == 1


def test_routes_of_web_interfaces_carry_their_own_task_secret_and_no_other():
    from rosetta.tasks.secret import task_secret

    owner = get_user_model().objects.create_user("owner")
    resource = Resource.objects.create(name="local")
    web = Software.objects.create(name="lab", image="localhost/rosetta/jupyterlab", interface_protocol="http")
    ssh = Software.objects.create(name="ssh", image="localhost/rosetta/ssh", interface_protocol="ssh")
    one, two, shell = (
        Task.objects.create(owner=owner, name=name, software=software, resource=resource, phase="running")
        for name, software in (("one", web), ("two", web), ("shell", ssh))
    )

    routes = load_route_table().routes

    assert routes[one.id].authorization == f"Authorization: Bearer {task_secret(one.id)}\r\n".encode()
    assert routes[two.id].authorization != routes[one.id].authorization and len(task_secret(two.id)) >= 43
    assert routes[shell.id].authorization is None
    assert task_secret(one.id) not in repr(routes[one.id])
