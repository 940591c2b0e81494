"""Users cannot make the engine connect where they like: images come from the registries the
operator allows, and the engine's own words (which can tell what answered where) are for staff."""

import html
import re

import pytest

from tests.e2e.test_http_flow import login

PASSWORD = "a long enough password"
FORM_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(scope="module")
def mallory(platform):
    token = platform.create_user("mallory-registries")
    with platform.api(token) as client:
        yield client


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("127.0.0.1:6379/x", "Images from 127.0.0.1:6379 are not allowed here."),  # a local service's port
        ("localhost:22/x", "Images from localhost:22 are not allowed here."),
        ("[::1]:25/x", None),  # not even a valid reference
        ("registry.example.org/lab/tool:1.0", "Images from registry.example.org are not allowed here."),
        ("debian:12", "'debian:12' names no registry"),  # a short name: the engine would pick the registry
        ("library/debian", "'library/debian' names no registry"),
    ],
)
def test_software_from_a_registry_not_allowed_is_refused(mallory, image, problem):
    response = mallory.post("/api/software", json={"name": "probe", "image": image})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    if problem:
        assert detail.startswith(problem) and detail.endswith(" Allowed registries: localhost."), detail
    else:
        assert "not a valid image reference" in detail
    assert "probe" not in [software["name"] for software in mallory.get("/api/software").json()]


def test_locally_built_images_are_allowed(mallory):
    response = mallory.post("/api/software", json={"name": "local-tool", "image": "localhost/lab/tool:1.0"})
    assert response.status_code == 201, response.text


def test_software_added_before_the_list_is_refused_when_a_task_starts(platform, mallory):
    # As an entry added before the operator narrowed the list (or by hand): no check on the way in.
    platform.rosetta(
        "manage",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from rosetta.catalog.models import Software; "
        "Software.objects.create(name='old-probe', image='127.0.0.1:6379/x', "
        "owner=User.objects.get(username='mallory-registries'))",
    )
    before = platform.list_tasks(mallory)
    response = mallory.post("/api/tasks", json={"software": "old-probe", "resource": "local"})
    assert response.status_code == 400, response.text
    assert (
        response.json()["detail"] == "Images from 127.0.0.1:6379 are not allowed here. Allowed registries: localhost."
    )
    assert platform.list_tasks(mallory) == before


def test_the_engines_own_words_are_shown_to_staff_only(platform):
    platform.create_user("ida-registries", password=PASSWORD)
    platform.create_user("staff-registries", password=PASSWORD, admin=True)
    user, staff = login(platform, "ida-registries", PASSWORD), login(platform, "staff-registries", PASSWORD)
    image = "localhost/rosetta-test/not-here"
    csrf = {"X-CSRFToken": FORM_TOKEN.search(user.get("/tasks/new/").text).group(1)}
    assert user.post("/api/software", json={"name": "not-here", "image": image}, headers=csrf).status_code == 201
    task = user.post("/api/tasks", json={"software": "not-here", "resource": "local"}, headers=csrf).json()
    failed = platform.wait_for_task(user, task["id"], {"failed", "exited", "running"})
    assert failed["phase"] == "failed" and failed["events"][-1]["reason"] == f"Image {image} does not exist on local."

    # The user: the plain reason, in the API and on the page, and nothing of the engine's.
    raw = platform.wait_for_task(staff, task["id"], {"failed"})["events"][-1]["detail"]
    assert raw.startswith("Error:") and image in raw  # what there is to hide
    assert all(event["detail"] == "" for event in failed["events"])
    assert all(event["detail"] == "" for event in user.get(f"/api/tasks/{task['id']}/events").json())
    shown = user.get(f"/tasks/{task['id']}/").text
    assert "does not exist on local." in shown and html.escape(raw) not in shown

    # Staff: the engine's words too.
    assert staff.get(f"/api/tasks/{task['id']}/events").json()[-1]["detail"] == raw
    assert html.escape(raw) in staff.get(f"/tasks/{task['id']}/").text
