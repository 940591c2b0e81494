"""The server-rendered web UI, through Django's test client against a real (temporary) database."""

import hashlib
import re
import subprocess
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from rosetta.accounts.models import ApiToken, SSHKey
from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.tasks.models import Task
from rosetta.tasks.phases import Phase

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def public_address(settings):
    settings.PUBLIC_URL = "http://localhost:8000"
    settings.TASKS_DOMAIN = "localhost"


@pytest.fixture
def software():
    return Software.objects.create(
        name="hello", image="localhost/rosetta/hello", visibility="everyone", description="Says hello over HTTP."
    )


@pytest.fixture
def resource():
    return Resource.objects.create(name="local", description="This machine.")


@pytest.fixture
def alice(client):
    user = get_user_model().objects.create_user("alice", password=PASSWORD)
    client.force_login(user)
    return user


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob", password=PASSWORD)


def new_task_form(**overrides) -> dict:
    form = {"software": "hello", "resource": "local", "name": "", "cpus": "1", "memory_mb": "512", "environment": ""}
    form.update(overrides)
    return form


class FormsAndLinks(HTMLParser):
    """Collects forms (with their inputs) and every URL-valued attribute of a page."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("href", "src", "action") and value]
        if tag == "form":
            self.forms.append(
                {"method": attributes.get("method", ""), "action": attributes.get("action", ""), "inputs": {}}
            )
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][attributes.get("name")] = attributes


def parse(response) -> FormsAndLinks:
    parser = FormsAndLinks()
    parser.feed(response.content.decode())
    return parser


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_login_with_password_lands_on_tasks(client, bob):
    response = client.post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("tasks")


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("tasks"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=/tasks/")


def test_home_redirects_to_tasks(client, alice):
    assert client.get("/")["Location"] == reverse("tasks")


def test_catalogue_and_resources_are_listed(client, alice, software, resource):
    catalogue = client.get(reverse("catalog"))
    assert catalogue.status_code == 200
    assert b"hello" in catalogue.content and b"localhost/rosetta/hello" in catalogue.content
    assert reverse("task-new").encode() + f"?software={software.pk}".encode() in catalogue.content

    resources = client.get(reverse("resources"))
    assert resources.status_code == 200
    assert b"local" in resources.content
    assert resource.kind.encode() in resources.content


def test_new_task_form_preselects_software(client, alice, software, resource):
    response = client.get(reverse("task-new") + "?software=hello")
    assert response.status_code == 200
    assert re.search(rf'<option value="{software.pk}"[^>]*selected'.encode(), response.content)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"resource": "nowhere"}, "resource", "Select a valid choice"),
        ({"cpus": "64"}, "cpus", "At most 2 CPUs on local"),
        ({"cpus": "0"}, "cpus", "greater than or equal to 0.1"),
        ({"memory_mb": "999999"}, "memory_mb", "At most 4096 MiB on local"),
        (
            {"environment": "BAD-NAME=x"},
            "environment",
            "Line 1: &#x27;BAD-NAME&#x27; is not a valid environment variable name",
        ),
        ({"environment": "GOOD=1\nno equals sign"}, "environment", "Line 2: expected NAME=value"),
        ({"environment": "BASE_PORT=1"}, "environment", "BASE_PORT is set by Rosetta itself"),
        ({"name": "-bad"}, "name", "is not a valid task name"),
        ({"memory_mb": "lots"}, "memory_mb", "is not a memory size"),
    ],
)
def test_invalid_new_task_is_refused_with_a_clear_error(client, alice, software, resource, overrides, field, message):
    response = client.post(reverse("task-new"), new_task_form(**overrides))
    assert response.status_code in (200, 400)
    assert message in response.content.decode()
    if field is not None:
        assert field in response.context["form"].errors
    assert not Task.objects.exists()


def test_duplicate_task_name_is_refused_next_to_the_name(client, alice, software, resource):
    first = client.post(reverse("task-new"), new_task_form(name="analysis"))
    assert first.status_code == 302
    second = client.post(reverse("task-new"), new_task_form(name="analysis"))
    assert second.status_code in (200, 400)
    assert "already have an active task called" in second.content.decode()
    assert "name" in second.context["form"].errors
    assert Task.objects.count() == 1


def test_valid_new_task_is_created_and_shown(client, alice, software, resource):
    response = client.post(
        reverse("task-new"), new_task_form(name="analysis", cpus="0.5", environment="GREETING=hi there\n\n")
    )
    task = Task.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("task", args=[task.id])
    assert (task.owner, task.name, task.phase) == (alice, "analysis", Phase.CREATED.value)
    assert (task.cpus, task.memory_mb, task.environment) == (0.5, 512, {"GREETING": "hi there"})

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"analysis" in page.content and task.id.encode() in page.content
    assert b"phase-created" in page.content
    assert b"Requested hello on local" in page.content  # the first event


def test_task_list_shows_own_tasks_only(client, alice, bob, software, resource):
    mine = Task.objects.create(owner=alice, name="mine", software=software, resource=resource)
    Task.objects.create(owner=bob, name="theirs", software=software, resource=resource)
    response = client.get(reverse("tasks"))
    assert response.status_code == 200
    assert reverse("task", args=[mine.id]).encode() in response.content
    assert b"theirs" not in response.content


def test_another_users_task_is_not_found(client, alice, bob, software, resource):
    theirs = Task.objects.create(owner=bob, name="theirs", software=software, resource=resource)
    for name in ("task", "task-open"):
        assert client.get(reverse(name, args=[theirs.id])).status_code == 404
    for name in ("task-stop", "task-delete"):
        assert client.post(reverse(name, args=[theirs.id])).status_code == 404
    assert Task.objects.filter(pk=theirs.pk, desired="running").exists()


def test_stop_and_delete_only_ask_for_it(client, alice, software, resource):
    task = Task.objects.create(owner=alice, name="work", software=software, resource=resource)
    assert client.post(reverse("task-stop", args=[task.id])).status_code == 302
    task.refresh_from_db()
    assert task.desired == "stopped"
    response = client.post(reverse("task-delete", args=[task.id]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("tasks")
    assert b"being stopped, then deleted" in response.content


def test_stop_needs_post(client, alice, software, resource):
    task = Task.objects.create(owner=alice, name="work", software=software, resource=resource)
    page = client.get(reverse("task-stop", args=[task.id]))  # a page that asks, nothing more
    assert page.status_code == 200 and "Stop work?" in page.content.decode()
    task.refresh_from_db()
    assert task.desired == "running"


def test_open_posts_a_one_time_token_to_the_task_origin(client, alice, software, resource):
    task = Task.objects.create(owner=alice, name="work", software=software, resource=resource, phase="running")
    response = client.get(reverse("task-open", args=[task.id]) + "?next=/lab/tree")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "strict-origin"  # the Referer names the platform, nothing more

    page = parse(response)
    handover = [form for form in page.forms if form["action"] == f"http://{task.id}.localhost:8000/.rosetta/login"]
    assert len(handover) == 1
    form = handover[0]
    assert form["method"].lower() == "post"
    token = form["inputs"]["token"]["value"]
    assert form["inputs"]["token"]["type"] == "hidden" and len(token) > 20
    assert form["inputs"]["next"]["value"] == "/lab/tree"
    assert "csrfmiddlewaretoken" not in form["inputs"]  # the task's origin must not see it
    assert not any(token in url for url in page.urls)


@pytest.mark.parametrize("unsafe", ["//evil.example/", "https://evil.example/", "/\\evil.example", "lab"])
def test_open_refuses_next_paths_leaving_the_task(client, alice, software, resource, unsafe):
    task = Task.objects.create(owner=alice, name="work", software=software, resource=resource, phase="running")
    response = client.get(reverse("task-open", args=[task.id]), {"next": unsafe})
    assert parse(response).forms[-1]["inputs"]["next"]["value"] == "/"


def test_open_an_ended_task_says_it_is_not_running(client, alice, software, resource):
    task = Task.objects.create(owner=alice, name="work", software=software, resource=resource, phase="exited")
    response = client.get(reverse("task-open", args=[task.id]))
    assert b"is not running" in response.content
    assert b'name="token"' not in response.content


def test_api_token_is_shown_once_and_stored_as_digest(client, alice):
    assert client.post(reverse("token-create"), {"name": "laptop"}).status_code == 400  # no scope ticked
    created = client.post(reverse("token-create"), {"name": "laptop", "scopes": ["tasks", "read"]})
    assert created.status_code == 302 and created["Location"] == reverse("account")  # a reload mints nothing
    response = client.get(reverse("account"))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "rosetta login --url" in response.content.decode()
    secret = re.search(rb'value="(rst_[^"]+)"', response.content).group(1).decode()
    assert response.content.decode().count(secret) == 1

    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop" and token.scopes == "read tasks"
    assert "<td>read tasks</td>" in response.content.decode()
    assert 'value="admin"' not in response.content.decode()  # staff powers are offered to staff only
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {token.name, token.digest, token.hint}

    again = client.get(reverse("account"))
    assert secret not in again.content.decode()
    assert token.hint.encode() in again.content


def test_token_names_are_unique_and_tokens_may_expire(client, alice):
    from datetime import timedelta

    from django.utils import timezone

    assert (
        client.post(reverse("token-create"), {"name": "ci", "expires_in_days": "7", "scopes": ["read"]}).status_code
        == 302
    )
    token = ApiToken.objects.get(user=alice, name="ci")
    assert timedelta(days=6, hours=23) < token.expires - timezone.now() <= timedelta(days=7)
    again = client.post(reverse("token-create"), {"name": "ci", "scopes": ["read"]})
    assert again.status_code == 400 and "already have a token called" in again.content.decode()
    assert ApiToken.objects.filter(user=alice).count() == 1
    # An expired token opens nothing, and says so.
    secret = "rst_expired-test-token"
    ApiToken.objects.create(
        user=alice, name="old", digest=hashlib.sha256(secret.encode()).hexdigest(), expires=timezone.now()
    )
    from django.test import Client

    refused = Client().get("/api/me", headers={"Authorization": f"Bearer {secret}"})  # no session
    assert refused.status_code == 401 and "invalid, expired or revoked" in refused.json()["detail"]
    assert "expired" in client.get(reverse("account")).content.decode()


def test_logging_out_says_so(client, alice):
    response = client.post(reverse("logout"), follow=True)
    assert "You are logged out." in response.content.decode()


def test_api_token_can_be_revoked_by_its_owner_only(client, alice, bob):
    theirs, _ = ApiToken.objects.create_for(bob, "theirs")
    mine, _ = ApiToken.objects.create_for(alice, "mine")
    assert client.post(reverse("token-revoke", args=[theirs.id])).status_code == 404
    assert client.post(reverse("token-revoke", args=[mine.id])).status_code == 302
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["theirs"]


def test_pages_escape_user_data(client, alice, resource):
    Software.objects.create(
        name="xss", image="localhost/x", visibility="everyone", description="<script>alert(1)</script>"
    )
    response = client.get(reverse("catalog"))
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_ssh_keys_are_managed_on_the_account_page(client, alice, bob, tmp_path, settings):
    settings.SSH_PORT = "2222"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", key], check=True)
    public = (tmp_path / "id_ed25519.pub").read_text()
    assert b"You have no SSH keys." in client.get(reverse("account")).content

    added = client.post(reverse("ssh-key-add"), {"public_key": public, "name": ""})
    assert added.status_code == 302
    mine = SSHKey.objects.get(user=alice)
    page = client.get(reverse("account")).content.decode()
    assert "alice@laptop" in page and mine.fingerprint in page
    # The door's host key to pin, and a ~/.ssh/config snippet for this user.
    assert "[localhost]:2222 ssh-ed25519 " in page and "User alice" in page

    again = client.post(reverse("ssh-key-add"), {"public_key": public, "name": "again"})
    assert again.status_code == 400 and "registered this key already" in again.content.decode()
    private = client.post(reverse("ssh-key-add"), {"public_key": key.read_text(), "name": ""})
    assert private.status_code == 400 and "This is a private key" in private.content.decode()
    assert key.read_text().split("\n")[1] not in private.content.decode()  # not echoed back

    theirs = SSHKey.objects.create(user=bob, name="b", public_key="x", kind="ED25519", bits=256, fingerprint="SHA256:b")
    assert client.post(reverse("ssh-key-remove", args=[theirs.id])).status_code == 404
    assert client.post(reverse("ssh-key-remove", args=[mine.id])).status_code == 302
    assert list(SSHKey.objects.values_list("name", flat=True)) == ["b"]


def test_an_ssh_task_shows_the_command_that_reaches_it(client, alice, software, resource, settings):
    settings.SSH_PORT = "2222"
    ssh = Software.objects.create(
        name="ssh", image="localhost/rosetta/ssh", visibility="everyone", interface_protocol="ssh", interface_port=2222
    )
    task = Task.objects.create(owner=alice, name="shell", software=ssh, resource=resource, phase="running")
    page = client.get(reverse("task", args=[task.id])).content.decode()
    assert f'value="ssh -J alice@localhost:2222 rosetta@{task.id}"' in page
    assert f"scp -o ProxyJump=alice@localhost:2222 FILE rosetta@{task.id}:" in page
    assert reverse("task-open", args=[task.id]) not in page  # nothing to open in a browser
    web = Task.objects.create(owner=alice, name="web", software=software, resource=resource, phase="running")
    assert "ssh -J" not in client.get(reverse("task", args=[web.id])).content.decode()
    settings.SSH_PORT = "off"
    assert "ssh -J" not in client.get(reverse("task", args=[task.id])).content.decode()


def test_an_ssh_task_started_without_a_key_says_nobody_can_log_in(client, alice, resource):
    Software.objects.create(name="ssh", image="localhost/rosetta/ssh", visibility="everyone", interface_protocol="ssh")
    response = client.post(reverse("task-new"), new_task_form(software="ssh", name="nokey"))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "You have no SSH key registered, so nobody can log in to this task." in page


def test_staff_run_users_and_everyones_tasks_from_the_pages(client, alice, bob, software, resource):
    task = Task.objects.create(owner=bob, name="bobs", software=software, resource=resource, phase="running")
    assert client.get(reverse("users")).status_code == 404  # not for users
    staff = get_user_model().objects.create_user("root-ish", password=PASSWORD, is_staff=True)
    client.force_login(staff)
    page = client.get(reverse("users")).content.decode()
    assert 'data-user="bob"' in page and 'data-user="alice"' in page

    # Every active task across users, with its owner, resource and age; staff stop it from there,
    # after a page that confirms it and asks why (the owner reads the reason on the task).
    listing = client.get(reverse("tasks")).content.decode()
    assert "bobs" in listing and ">bob<" in listing and "running for" in listing
    assert f'href="{reverse("task-stop", args=[task.id])}?back=list"' in listing
    asked = client.post(reverse("task-stop", args=[task.id]), {"back": "list"})
    assert asked.status_code == 200 and "Stop bobs?" in asked.content.decode()
    refused = client.post(reverse("task-stop", args=[task.id]), {"back": "list", "reason": "  "})
    assert refused.status_code == 400 and "Say why you stop bob's task" in refused.content.decode()
    task.refresh_from_db()
    assert task.desired == "running"
    stopped = client.post(reverse("task-stop", args=[task.id]), {"back": "list", "reason": "Node maintenance"})
    assert stopped["Location"] == reverse("tasks")
    task.refresh_from_db()
    assert task.desired == "stopped"
    assert task.events.last().reason == "Stop requested by staff (root-ish): Node maintenance."

    assert client.post(reverse("user-toggle", args=[bob.pk])).status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active and "deactivated" in client.get(reverse("users")).content.decode()
    client.post(reverse("user-toggle", args=[bob.pk]))
    bob.refresh_from_db()
    assert bob.is_active

    client.post(reverse("user-reset-password", args=[bob.pk]))
    shown = client.get(reverse("users")).content.decode()
    password = re.search(r'aria-label="New password"', shown) and re.search(r'value="([^"]+)" data-secret', shown)
    assert password and get_user_model().objects.get(pk=bob.pk).check_password(password.group(1))
    assert password.group(1) not in client.get(reverse("users")).content.decode()  # shown once


def test_a_task_nobody_picks_up_says_so(client, alice, software, resource, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.TASK_START_TIMEOUT = 120
    waiting = Task.objects.create(owner=alice, name="stuck", software=software, resource=resource)
    Task.objects.filter(pk=waiting.pk).update(phase_since=timezone.now() - timedelta(seconds=12))
    page = client.get(reverse("task", args=[waiting.id])).content.decode()
    assert "waiting for the controller to launch it" in page
    assert "No controller has picked this task up after 12 s" in page
    starting = Task.objects.create(owner=alice, name="slow", software=software, resource=resource, phase="starting")
    shown = client.get(f"/api/tasks/{starting.id}").json()
    assert (shown["waiting_for"], shown["phase_timeout"], shown["warning"]) == (
        "waiting for the interface to answer",
        120,
        "",
    )
    page = client.get(reverse("task", args=[starting.id])).content.decode()
    assert 'data-timeout="120' in page and "waiting for the interface to answer" in page


def test_a_stopped_ssh_task_says_it_no_longer_runs_instead_of_its_command(client, alice, resource, settings):
    settings.SSH_PORT = "2222"
    ssh = Software.objects.create(
        name="ssh", image="localhost/rosetta/ssh", visibility="everyone", interface_protocol="ssh", interface_port=2222
    )
    task = Task.objects.create(owner=alice, name="shell", software=ssh, resource=resource, phase="stopped")
    page = client.get(reverse("task", args=[task.id])).content.decode()
    assert "ssh -J" not in page and "data-copy" not in page
    assert "This task no longer runs, so no ssh command reaches it." in page
    Task.objects.filter(pk=task.pk).update(phase="stopping")
    stopping = client.get(reverse("task", args=[task.id])).content.decode()
    assert re.search(r'<div data-show-when="created queued starting running" hidden>\s*<p>Log in', stopping)
    assert re.search(r'<p data-show-when="stopping" data-ssh-ended>This task is stopping', stopping)


def test_a_batch_jobs_expected_start_reads_like_the_other_times(client, alice, software, resource):
    resource.scheduler = "slurm"
    resource.save()
    task = Task.objects.create(
        owner=alice, name="waits", software=software, resource=resource, phase="queued",
        backend_state={"job": "17", "reason": "Priority", "starts_at": "2026-12-06T18:49:47+00:00"},
    )  # fmt: skip
    page = client.get(reverse("task", args=[task.id])).content.decode()
    assert '<time data-field="placement-starts_at" datetime="2026-12-06T18:49:47+00:00">2026-12-06 18:49</time>' in page
    assert ">2026-12-06T18:49:47+00:00<" not in page


def test_the_owner_reads_why_staff_stopped_their_task(client, alice, bob, software, resource):
    from rosetta.tasks import services

    staff = get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    task = Task.objects.create(owner=alice, name="long-run", software=software, resource=resource, phase="running")
    services.request_stop(task, by=staff, reason="The disk of this machine is replaced")
    task.refresh_from_db()
    task.transition(Phase.STOPPING, "Stopping.")
    task.transition(Phase.STOPPED, "The container was stopped and removed.")
    said = "Stop requested by staff (operator): The disk of this machine is replaced."
    page = client.get(reverse("task", args=[task.id])).content.decode()
    banner = re.search(r'<section class="outcome outcome-stopped"\s*>(.*?)</section>', page, re.S).group(1)
    assert "This task was stopped" in banner and said in banner
    listing = client.get(reverse("tasks") + "?show=finished").content.decode()
    assert f'<div class="reason stopped small">{said}</div>' in listing

    # A deactivation says so too; a task its owner stopped keeps the plain words.
    theirs = Task.objects.create(owner=bob, name="bobs", software=software, resource=resource, phase="running")
    services.stop_tasks_of(bob)
    theirs.refresh_from_db()
    theirs.transition(Phase.STOPPING, "Stopping.")
    theirs.transition(Phase.STOPPED, "The container was stopped and removed.")
    mine = Task.objects.create(owner=alice, name="own-stop", software=software, resource=resource, phase="running")
    services.request_stop(mine, by=alice)
    mine.refresh_from_db()
    mine.transition(Phase.STOPPING, "Stopping.")
    mine.transition(Phase.STOPPED, "The container was stopped and removed.")
    client.force_login(bob)
    bobs = client.get(reverse("tasks") + "?show=finished").content.decode()
    assert '<div class="reason stopped small">Stopped because the account was deactivated by staff.</div>' in bobs
    client.force_login(alice)
    own = client.get(reverse("task", args=[mine.id])).content.decode()
    assert '<p data-field="reason">The container was stopped and removed.</p>' in own
    finished = client.get(reverse("tasks") + "?show=finished").content.decode()
    row = re.search(rf'<tr data-task-id="{mine.id}".*?</tr>', finished, re.S).group(0)
    assert "own-stop" in row and 'class="reason' not in row


def test_unknown_pages_are_rosettas_own_and_api_paths_stay_json(client, alice):
    missing = client.get("/resources/testbed-slurm/")
    page = missing.content.decode()
    assert missing.status_code == 404 and 'data-error-page="404"' in page
    assert '<a class="brand" href="/">Rosetta</a>' in page and 'href="/tasks/">Your tasks</a>' in page
    assert '<code class="command">/resources/testbed-slurm/</code>' in page
    client.logout()
    anonymous = client.get("/no/such/page/")
    assert anonymous.status_code == 404 and 'data-error-page="404"' in anonymous.content.decode()
    api = client.get("/api/no/such/endpoint")
    assert api.status_code == 404 and api.json() == {"detail": "There is no such API endpoint; see /api/docs."}


def test_a_server_error_is_said_in_rosettas_look(client, alice, monkeypatch):
    def broken(user):
        raise RuntimeError("a fault of the platform")

    monkeypatch.setattr("rosetta.web.views.services.task_list_of", broken)  # a bug, injected
    client.raise_request_exception = False
    answer = client.get(reverse("tasks"))
    page = answer.content.decode()
    assert answer.status_code == 500 and 'data-error-page="500"' in page
    assert "Rosetta met an internal error" in page and 'href="/tasks/">Your tasks</a>' in page


def test_known_partitions_are_offered_as_a_select_with_the_default_marked(client, alice, software, resource):
    cluster = Resource.objects.create(
        name="cluster", scheduler="slurm", max_cpus=8, max_memory_mb=8192, facts={"partitions": [
            {"name": "debug", "default": True, "max_minutes": 60, "cpus_per_node": 2, "memory_mb_per_node": 4096},
            {"name": "long", "default": False, "max_minutes": 1440, "cpus_per_node": 2, "memory_mb_per_node": 4096},
        ]},
    )  # fmt: skip
    form = client.get(reverse("task-new") + "?software=hello").content.decode()
    assert '<input type="text" name="partition"' in form  # local shown first: nothing known to offer
    assert 'data-partitions="debug long" data-default-partition="debug"' in form
    Resource.objects.filter(pk=resource.pk).update(enabled=False)  # the cluster alone: shown first
    form = client.get(reverse("task-new") + "?software=hello").content.decode()
    select = re.search(r'<select name="partition"[^>]*>(.*?)</select>', form, re.S)
    assert select, form
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select.group(1))
    assert options == [("debug", " selected", "debug (default)"), ("long", "", "long")]
    # The server still checks what is sent, select or not.
    refused = client.post(reverse("task-new"), new_task_form(resource="cluster", partition="gpu", memory_mb="1G"))
    assert "cluster has no partition &#x27;gpu&#x27;; it has debug, long." in refused.content.decode()
    assert not Task.objects.exists()
    # Without known partitions: the text box.
    cluster.facts = {}
    cluster.save()
    form = client.get(reverse("task-new") + "?software=hello").content.decode()
    assert '<input type="text" name="partition"' in form


def test_the_task_form_asks_what_the_cluster_s_scheduler_takes_and_refuses_a_bad_value(client, alice, software):
    Resource.objects.create(name="cluster", scheduler="slurm", transport="ssh", host="h", credentials="user")
    form = client.get(reverse("task-new") + "?software=hello").content.decode()
    for option in ("account", "qos", "gres"):  # from the Slurm kind's request schema
        assert f'name="{option}"' in form
    refused = client.post(reverse("task-new"), new_task_form(resource="cluster", qos="high; scancel"))
    assert "qos: String should match pattern" in refused.content.decode()
    assert not Task.objects.exists()
    client.post(reverse("task-new"), new_task_form(resource="cluster", account="astro", qos="high", time_limit="2h"))
    assert Task.objects.get().scheduler_options == {"account": "astro", "qos": "high", "time_limit_minutes": 120}
    task = Task.objects.get()
    page = client.get(reverse("task", args=[task.id])).content.decode()
    assert "partition (the resource's default) · 2 h · account astro · qos high</dd>" in page
