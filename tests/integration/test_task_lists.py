"""Long task lists stay fast: the API, the web page and the gateway's route table hold a page
(or what can be routed), never the whole history. Django's test client against a real
(temporary) database, with the volume of a platform that has run for a while."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from rosetta.accounts.models import ApiToken
from rosetta.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.core.keyset import cursor_after
from rosetta.gateway.snapshot import MAX_FINISHED_ROUTES, load_route_table
from rosetta.tasks.models import Task, TaskEvent
from rosetta.web.views import FINISHED_PER_PAGE, PER_PAGE

pytestmark = pytest.mark.django_db

FINISHED = 1500


@pytest.fixture(autouse=True)
def public_address(settings):
    settings.PUBLIC_URL = "http://localhost:8000"
    settings.TASKS_DOMAIN = "localhost"


@pytest.fixture
def software():
    return Software.objects.create(name="hello", image="localhost/rosetta/hello", visibility="everyone")


@pytest.fixture
def resource():
    return Resource.objects.create(name="local")


@pytest.fixture
def alice(client):
    user = get_user_model().objects.create_user("alice")
    client.force_login(user)
    return user


@pytest.fixture
def api(client, alice):
    """GET on the API with alice's token, as scripts and the CLI call it."""
    _, secret = ApiToken.objects.create_for(alice)

    def get(path: str, **params):
        return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {secret}")

    return get


def make_finished(owner, software, resource, count: int, ties: int = 7) -> list[str]:
    """``count`` finished tasks of ``owner`` with their events, as `rosetta manage shell` would make
    them; every ``ties`` tasks share one creation time (the id then orders them)."""
    now = timezone.now()
    tasks = [
        Task(
            owner=owner, software=software, resource=resource, name=f"old-{number}", phase="exited", exit_code=0,
            finished=now - timedelta(minutes=number), phase_since=now - timedelta(minutes=number),
        )
        for number in range(count)
    ]  # fmt: skip
    Task.objects.bulk_create(tasks)
    for number, task in enumerate(tasks):  # auto_now_add stamped them all "now": spread them out, with ties
        Task.objects.filter(pk=task.pk).update(created=now - timedelta(hours=2, seconds=number // ties))
    events = [
        TaskEvent(task=task, phase=phase, reason=f"{phase.capitalize()}: a reason as long as the platform writes.")
        for task in tasks
        for phase in ("created", "starting", "running", "exited")
    ]
    TaskEvent.objects.bulk_create(events)
    made = Task.objects.filter(pk__in=[task.pk for task in tasks]).order_by("-created", "-id")
    return list(made.values_list("pk", flat=True))  # newest first, as lists show them


def new_task(owner, software, resource, name: str, phase: str = "running", **fields) -> Task:
    return Task.objects.create(owner=owner, software=software, resource=resource, name=name, phase=phase, **fields)


def walk(api, phase: str, limit: int, between=None) -> list[dict]:
    """Every page of the API's list, calling ``between`` after each."""
    listed, path, params = [], "/api/tasks", {"phase": phase, "limit": limit}
    while True:
        page = api(path, **params)
        assert page.status_code == 200, page.content
        body = page.json()
        assert set(body) == {"items", "next", "next_cursor"} and len(body["items"]) <= limit
        listed += body["items"]
        if body["next"] is None:
            assert body["next_cursor"] is None
            return listed
        path, params = body["next"], {}  # the next page's URL as given, with the same phase and limit
        assert f"cursor={body['next_cursor']}" in path and f"phase={phase}" in path
        if between:
            between()


def test_the_api_lists_every_task_once_a_page_at_a_time_while_tasks_are_created(api, alice, software, resource):
    old = make_finished(alice, software, resource, 230)
    running = new_task(alice, software, resource, "running")
    created = []

    def start_one():
        created.append(new_task(alice, software, resource, f"new-{len(created)}").pk)

    listed = walk(api, "all", 50, between=start_one)

    ids = [task["id"] for task in listed]
    assert len(ids) == len(set(ids)) == 231, "no task twice"
    assert set(ids) == {running.pk, *old}, "none missed; the ones created meanwhile are newer than the walk"
    assert ids[0] == running.pk and len(created) == 4
    # Newest first, ties on the creation time in a fixed order; a fresh first page shows the new ones.
    assert [t["created"] for t in listed] == sorted((t["created"] for t in listed), reverse=True)
    first = api("/api/tasks").json()
    assert [t["id"] for t in first["items"][:4]] == created[::-1] and len(first["items"]) == DEFAULT_LIMIT
    # The phase filter pages the same way; the largest page is allowed.
    assert {t["id"] for t in walk(api, "finished", MAX_LIMIT)} == set(old)
    assert [t["id"] for t in walk(api, "active", 2)] == [*created[::-1], running.pk]


def test_the_list_leaves_out_what_only_a_tasks_own_answer_needs(api, alice, software, resource):
    make_finished(alice, software, resource, 3)
    item = api("/api/tasks").json()["items"][0]
    assert not {"events", "environment", "mounts", "kept"} & set(item)
    detail = api(f"/api/tasks/{item['id']}").json()
    assert [event["phase"] for event in detail["events"]] == ["created", "starting", "running", "exited"]
    assert {"environment", "mounts", "kept"} <= set(detail)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"limit": MAX_LIMIT + 1}, f"limit: Input should be less than or equal to {MAX_LIMIT}"),
        ({"limit": "many"}, "limit: Input should be a valid integer"),
        ({"cursor": "not-a-cursor"}, "cursor: not a cursor this list gave out"),
        ({"cursor": "MXwyMDI2LTEyLTA2fHQx"}, "cursor: not a cursor this list gave out"),  # 1|2026-12-06|t1, no zone
        ({"cursor": "MnwyMDI2LTEyLTA2VDAwOjAwOjAwKzAwOjAwfHQx"}, "cursor: not a cursor"),  # another version
        ({"cursor": "MXwyMDI2LTEyLTA2VDAwOjAwOjAwKzAwOjAwfCcgT1IgMT0x"}, "cursor: not a cursor"),  # id "' OR 1=1"
        ({"cursor": "%%%"}, "cursor: not a cursor"),
        ({"cursor": "A" * 5000}, "cursor: String should have at most"),
    ],
)
def test_bad_cursors_and_limits_are_refused_in_plain_words(api, alice, params, said):
    response = api("/api/tasks", **params)
    assert response.status_code == 422 and said in response.json()["detail"], response.content


def test_a_cursor_names_a_place_in_the_list_not_a_task_that_must_still_exist(api, alice, software, resource):
    make_finished(alice, software, resource, 5)
    first = api("/api/tasks", limit=2).json()
    Task.objects.filter(pk=first["items"][-1]["id"]).delete()  # the task the cursor names is deleted meanwhile
    rest = api("/api/tasks", limit=10, cursor=first["next_cursor"]).json()
    assert len(rest["items"]) == 3 and rest["next"] is None
    assert not {t["id"] for t in first["items"]} & {t["id"] for t in rest["items"]}


def test_others_see_none_of_it_through_a_cursor(api, alice, software, resource):
    bob = get_user_model().objects.create_user("bob")
    theirs = make_finished(bob, software, resource, 20)
    mine = make_finished(alice, software, resource, 3)
    cursor = cursor_after(Task.objects.get(pk=theirs[0]))
    listed = {t["id"] for t in walk(api, "all", 2)} | {
        t["id"] for t in api("/api/tasks", cursor=cursor).json()["items"]
    }
    assert listed <= set(mine)


def rows(page: str) -> list[str]:
    return re.findall(r'<tr data-task-id="(\w+)"', page)


def test_the_web_list_shows_active_tasks_first_then_finished_ones_a_page_at_a_time(client, alice, software, resource):
    old = make_finished(alice, software, resource, FINISHED)
    long_running = new_task(alice, software, resource, "long-running")
    Task.objects.filter(pk=long_running.pk).update(created=timezone.now() - timedelta(days=30))  # older than all
    starting = new_task(alice, software, resource, "starting", phase="starting")

    first = client.get(reverse("tasks") + "?show=all")
    page = first.content.decode()
    listed = rows(page)
    assert listed[:2] == [starting.pk, long_running.pk], "every active task on the first page, first"
    assert len(listed) == 2 + FINISHED_PER_PAGE and listed[2:] == old[:FINISHED_PER_PAGE]
    assert len(first.content) < 150_000, len(first.content)
    # The page's script polls the API for exactly these rows, in this order.
    api_urls = re.search(r'data-api="([^"]+)"', page).group(1).replace("&amp;", "&").split()
    assert api_urls == ["/api/tasks?phase=active&limit=500", f"/api/tasks?phase=finished&limit={FINISHED_PER_PAGE}"]
    polled = [t["id"] for url in api_urls for t in client.get(url).json()["items"]]
    assert polled == listed

    # "Older tasks" leads through every finished task once; its pages' scripts poll the same rows.
    seen, sizes = listed[2:], [len(first.content)]
    while older := re.search(r'href="\?show=all&amp;cursor=([\w-]+)" rel="next"', page):
        answer = client.get(reverse("tasks"), {"show": "all", "cursor": older.group(1)})
        page = answer.content.decode()
        sizes.append(len(answer.content))
        assert '<a class="button small" href="?show=all">← Newest</a>' in page
        seen += rows(page)
        api_url = re.search(r'data-api="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert [t["id"] for t in client.get(api_url).json()["items"]] == rows(page)
    assert seen == old and long_running.pk not in seen, "each finished task once, in order; active ones not again"
    assert max(sizes) < 150_000, max(sizes)

    # The finished tab pages the same way; the active one shows the active tasks.
    finished = client.get(reverse("tasks") + "?show=finished").content.decode()
    assert rows(finished) == old[:FINISHED_PER_PAGE] and "Delete 1500 finished tasks" in finished
    assert rows(client.get(reverse("tasks")).content.decode()) == [starting.pk, long_running.pk]


def test_a_broken_page_link_is_said_plainly(client, alice):
    answer = client.get(reverse("tasks"), {"show": "finished", "cursor": "broken"})
    page = answer.content.decode()
    assert answer.status_code == 400 and "This page of the list does not exist" in page
    assert 'href="/tasks/?show=finished">The newest tasks</a>' in page


def test_many_finished_tasks_make_a_small_route_table_that_still_routes_the_active_ones(alice, software, resource):
    make_finished(alice, software, resource, FINISHED)
    Task.objects.update(finished=timezone.now() - timedelta(minutes=5))  # all ended within the window
    running = new_task(alice, software, resource, "running", endpoint_host="127.0.0.1", endpoint_port=41000)
    starting = new_task(alice, software, resource, "starting", phase="starting")
    ended_last = Task.objects.filter(pk=make_finished(alice, software, resource, 1)[0])
    ended_last.update(finished=timezone.now())

    routes = load_route_table().routes

    assert len(routes) == 2 + MAX_FINISHED_ROUTES, "the active tasks and the latest that ended, not the history"
    assert routes[running.pk].upstream == ("127.0.0.1", 41000) and routes[starting.pk].upstream is None
    assert routes[ended_last.get().pk].is_final, "a page left open on the task that just ended says so"


def test_more_active_tasks_than_a_page_holds_are_a_link_away(client, alice, software, resource, monkeypatch):
    monkeypatch.setattr("rosetta.web.views.ACTIVE_PER_PAGE", 2)
    monkeypatch.setitem(PER_PAGE, "active", 2)
    old = make_finished(alice, software, resource, 3)
    active = [new_task(alice, software, resource, f"active-{number}").pk for number in range(3)][::-1]

    page = client.get(reverse("tasks"), {"show": "all"}).content.decode()
    assert rows(page) == [*active[:2], *old]
    more = re.search(r'href="\?show=active&amp;cursor=([\w-]+)">More active tasks →</a>', page).group(1)
    assert rows(client.get(reverse("tasks"), {"show": "active", "cursor": more}).content.decode()) == active[2:]
