"""Who the platform is on resources where each user is their own account (issue 13, item 1),
attacked through the real stack: the test bed's sshd, its accounts alice and bob, a per-user
resource, a storage over SFTP in the account's home, tasks, the API, the Resources page and
the operator's command.

A user once took another's account by giving its name: the platform then listed, read and
wrote that account's files with the connection the other user's key had opened. Now a name is
accepted once the user's own key logs in as it, no two users hold one account unless an
operator says so, and a connection serves only the user and key that opened it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError

from rosetta.computing.errors import AccountRefused
from rosetta.computing.models import Resource, SSHIdentity
from tests.instance import Platform, free_port
from tests.integration.test_remote import TESTBED, bed, history, on, start

PASSWORD = "a-long-test-password"


def identity(username: str, remote: str = "", checked: bool = False, shared: bool = False) -> SSHIdentity:
    made = SSHIdentity.of(get_user_model().objects.create_user(username))
    made.remote_username, made.remote_name_checked, made.remote_name_shared = remote, checked, shared
    made.save()
    return made


@pytest.mark.django_db
def test_who_the_platform_logs_in_as_when_several_users_name_one_account():
    # A name proven (or given by an operator) outranks another user's Rosetta name, never the reverse.
    proven, later = identity("pia", "acct", checked=True), identity("acct")
    assert proven.account() == "acct"
    with pytest.raises(AccountRefused, match="another Rosetta user"):
        later.account()
    # A name given unchecked (before names were checked) outranks nothing: both are refused.
    unchecked, by_default = identity("una", "xavier"), identity("xavier")
    for refused in (unchecked, by_default):
        with pytest.raises(AccountRefused):
            refused.account()
    # Shared only when an operator said so of every holder.
    first, second = identity("sam", "yan", checked=True, shared=True), identity("sue", "yan", checked=True, shared=True)
    assert first.account() == second.account() == "yan"
    identity("sid", "yan")
    with pytest.raises(AccountRefused):
        first.account()
    # Two proven claims on one name cannot both be recorded, even at the same moment.
    identity("tom", "zed", checked=True)
    with pytest.raises(IntegrityError):
        identity("tim", "zed", checked=True)


@pytest.mark.django_db
def test_a_connection_is_keyed_by_the_user_and_key_not_only_the_account_name():
    resource = Resource(name="own", transport="ssh", credentials="user", host="10.0.0.1", host_keys="ssh-ed25519 A")
    sam, sue = identity("sam", "yan", checked=True, shared=True), identity("sue", "yan", checked=True, shared=True)
    assert resource.transport_key(sam.user) == resource.transport_key(sam.user)
    assert resource.transport_key(sam.user) != resource.transport_key(sue.user)
    assert resource.transport_key(sam.user)[-1] == sam.fingerprint != sue.fingerprint


def account(name: str) -> dict:
    return next(a for a in bed()["accounts"] if a["name"] == name)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A platform with a per-user resource on the test bed's podman host, and a storage in each
    user's own home there (open to everyone)."""
    described = bed()
    host = next(h for h in described["hosts"] if h["name"] == "rstb-host")
    platform = Platform(tmp_path_factory.mktemp("identity"), settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    staff = platform.api(platform.create_user("operator-identity", admin=True))
    try:
        added = staff.post("/api/resources", json={
            "name": "own", "transport": "ssh", "host": host["address"], "credentials": "user", "enabled": True,
        })  # fmt: skip
        assert added.status_code == 201, added.text
        assert staff.post("/api/resources/own/check", params={"pin": "true"}).json()["pinned"]
        home = account("alice")["home"].replace("alice", "{username}")
        storage = staff.post("/api/storages", json={
            "name": "own-home", "kind": "sftp", "resource": "own", "base_path": f"{home}/rosetta-identity-test",
        })  # fmt: skip
        assert storage.status_code == 201, storage.text
        yield platform, staff
    finally:
        staff.close()
        platform.stop()


@pytest.fixture
def keys():
    """Authorise a user's platform key for a test bed account, as its owner would; every
    account's authorized_keys and test folder are as before afterwards."""
    accounts = [account(name) for name in ("alice", "bob")]
    files = {a["name"]: Path(a["home"]) / ".ssh" / "authorized_keys" for a in accounts}
    before = {name: path.read_text() for name, path in files.items()}

    def authorise(name: str, api) -> None:
        files[name].write_text(files[name].read_text() + api.get("/api/me/ssh-key").json()["public_key"] + "\n")

    yield authorise
    for name, path in files.items():
        path.write_text(before[name])
    for a in accounts:
        on("rstb-host", "rm", "-rf", f"{a['home']}/rosetta-identity-test", user=a["name"])


def users(platform, *names: str):
    return [platform.api(platform.create_user(name)) for name in names]


def release(platform, *names: str) -> None:
    """What an operator does: give users back their own name (the account they held is free)."""
    for name in names:
        platform.rosetta("users", "set-remote-name", name, "")


def login(platform, username: str) -> httpx.Client:
    browser = httpx.Client(base_url=platform.url, timeout=30, follow_redirects=False)
    page = browser.get("/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = browser.post(
        "/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{platform.url}/login/"},
    )
    assert response.status_code == 302, response.text
    return browser


def test_a_user_cannot_take_the_account_another_user_proved(site, keys):
    platform, _ = site
    bea, ann = users(platform, "bea", "ann")
    try:
        # Bea is alice: alice put Bea's key in her authorized_keys, then Bea gave the name.
        keys("alice", bea)
        assert bea.put("/api/me/ssh-key", json={"remote_username": "alice"}).status_code == 200
        written = bea.put("/api/storages/own-home/content", params={"path": "diary.txt"}, content=b"dear")
        assert written.status_code == 201, written.text
        assert [e["name"] for e in bea.get("/api/storages/own-home/entries").json()["entries"]] == ["diary.txt"]
        task_of_bea = start(bea, "own", name="bea-as-alice")

        # Ann gives alice's name: refused, whether or not her key would log in.
        taken = ann.put("/api/me/ssh-key", json={"remote_username": "alice"})
        assert taken.status_code == 409 and "already" in taken.json()["detail"], taken.text
        # An account whose authorized_keys lack her key: refused, saying what to do.
        unproven = ann.put("/api/me/ssh-key", json={"remote_username": "bob"})
        assert unproven.status_code == 400, unproven.text
        said = unproven.json()["detail"]
        assert "authorized_keys" in said and ann.get("/api/me/ssh-key").json()["public_key"] in said
        assert ann.get("/api/me/ssh-key").json()["remote_username"] == "ann"

        # Whatever she tries, none of alice's files reach her and nothing runs as alice for her.
        for response in (
            ann.get("/api/storages/own-home/entries"),
            ann.get("/api/storages/own-home/content", params={"path": "diary.txt"}),
            ann.put("/api/storages/own-home/content", params={"path": "diary.txt"}, content=b"pwned"),
        ):
            assert response.status_code >= 400 and b"dear" not in response.content, response.text
        task_of_ann = start(ann, "own", name="ann-tries")
        task = platform.wait_for_task(bea, task_of_bea, {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] == "running", history(task)
        time.sleep(3)  # a few controller passes for Ann's task
        task = ann.get(f"/api/tasks/{task_of_ann}").json()
        assert task["phase"] == "created" and any("refused" in reason for _, reason in history(task)), history(task)
        running_as_alice = on("rstb-host", "podman", "ps", "--format", "{{.Names}}", user="alice").stdout.split()
        assert f"rosetta-{task_of_bea}" in running_as_alice and f"rosetta-{task_of_ann}" not in running_as_alice
        assert (Path(account("alice")["home"]) / "rosetta-identity-test" / "diary.txt").read_bytes() == b"dear"
        for api, task_id in ((bea, task_of_bea), (ann, task_of_ann)):
            api.post(f"/api/tasks/{task_id}/stop")
            platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    finally:
        release(platform, "bea")


def test_a_user_who_tried_first_locks_no_one_out(site, keys):
    """Carl gives bob's name before Dora does, then uses the storage: Dora, whose key bob
    authorised, still gets in, and Carl still does not — even with an operator letting both hold
    the name, each user goes through a connection of their own key's."""
    platform, _ = site
    carl, dora = users(platform, "carl", "dora")
    try:
        first = carl.put("/api/me/ssh-key", json={"remote_username": "bob"})
        assert first.status_code == 400, first.text
        keys("bob", dora)
        assert dora.put("/api/me/ssh-key", json={"remote_username": "bob"}).status_code == 200
        assert dora.put("/api/storages/own-home/content", params={"path": "d.txt"}, content=b"d").status_code == 201

        # An operator lets Carl share the account. His key is not bob's: his own connection is
        # refused (and held off for a while), and Dora's goes on serving Dora alone.
        platform.rosetta("users", "set-remote-name", "carl", "bob", "--shared")
        assert carl.get("/api/me/ssh-key").json()["remote_username"] == "bob"
        for _ in range(2):
            refused = carl.get("/api/storages/own-home/entries")
            assert refused.status_code >= 400 and b"d.txt" not in refused.content, refused.text
            listed = dora.get("/api/storages/own-home/entries")
            assert listed.status_code == 200 and [e["name"] for e in listed.json()["entries"]] == ["d.txt"]
        written = Path(account("bob")["home"]) / "rosetta-identity-test" / "d.txt"
        assert written.stat().st_uid == account("bob")["uid"]
    finally:
        release(platform, "carl", "dora")


def test_a_collision_from_before_is_refused_until_an_operator_settles_it(site, keys):
    """Names given before they were checked may collide: the platform then logs in as that
    account for none of the users who hold it, says why (to a running task too), and an operator
    settles it."""
    platform, _ = site
    eve, finn = users(platform, "eve", "finn")
    try:
        keys("alice", eve)
        assert eve.put("/api/me/ssh-key", json={"remote_username": "alice"}).status_code == 200
        assert eve.put("/api/storages/own-home/content", params={"path": "e.txt"}, content=b"e").status_code == 201
        running = start(eve, "own", name="eve-as-alice")
        platform.wait_for_task(eve, running, {"running"}, timeout=120)
        platform.rosetta("manage", "shell", "-c", (  # Finn's name, as an older Rosetta took it unchecked
            "from django.contrib.auth import get_user_model; from rosetta.computing.models import SSHIdentity; "
            "i = SSHIdentity.of(get_user_model().objects.get(username='finn')); "
            "i.remote_username = 'alice'; i.save()"
        ))  # fmt: skip
        for api in (eve, finn):
            refused = api.get("/api/storages/own-home/entries")
            assert refused.status_code == 409 and "another Rosetta user" in refused.json()["detail"], refused.text
            started = api.post("/api/tasks", json={"software": "hello", "resource": "own"})
            assert started.status_code == 409 and "does not log in as alice" in started.json()["detail"], started.text
        deadline = time.monotonic() + 30  # the controller's next look at the resources
        while True:
            task = eve.get(f"/api/tasks/{running}").json()
            if any("does not log in as alice" in reason for _, reason in history(task)):
                break
            assert time.monotonic() < deadline, history(task)
            time.sleep(0.5)
        assert task["phase"] == "running"  # left as it is

        release(platform, "finn")
        assert [e["name"] for e in eve.get("/api/storages/own-home/entries").json()["entries"]] == ["e.txt"]
        assert finn.get("/api/storages/own-home/entries").status_code >= 400
        eve.post(f"/api/tasks/{running}/stop")
        platform.wait_for_task(eve, running, {"stopped"}, timeout=60)  # the controller reaches it again
    finally:
        release(platform, "eve", "finn")


def test_the_resources_page_checks_as_the_api_does(site, keys):
    platform, staff = site
    platform.create_user("hana", password=PASSWORD)
    (ida,) = users(platform, "ida")
    keys("alice", ida)
    assert ida.put("/api/me/ssh-key", json={"remote_username": "alice"}).status_code == 200
    browser = login(platform, "hana")
    try:
        for name, said in (("alice", "already"), ("bob", "authorized_keys")):
            page = browser.get("/resources/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            saved = browser.post(
                "/account/remote-username",
                data={"remote_username": name, "csrfmiddlewaretoken": csrf},
                headers={"Referer": f"{platform.url}/resources/"},
                follow_redirects=True,
            )
            assert said in saved.text and "Rosetta will use that account" not in saved.text, saved.text
        assert browser.get("/api/me/ssh-key").json()["remote_username"] == "hana"

        # With no resource where users are their own accounts, there is nothing to check on.
        assert staff.patch("/api/resources/own", json={"enabled": False}).status_code == 200
        nowhere = browser.put("/api/me/ssh-key", json={"remote_username": "bob"}, headers={"X-CSRFToken": csrf,
                              "Referer": f"{platform.url}/"})  # fmt: skip
        assert nowhere.status_code == 400 and "ask an operator" in nowhere.json()["detail"], nowhere.text
    finally:
        staff.patch("/api/resources/own", json={"enabled": True})
        browser.close()
        release(platform, "ida")


def test_a_name_proven_outranks_a_later_users_rosetta_name(site, keys):
    """A Rosetta account created later under the account's name does not lock out the user who
    proved it: the newcomer is the one refused. (Last: the Rosetta user bob holds bob from now on.)"""
    platform, _ = site
    (gus,) = users(platform, "gus")
    try:
        keys("bob", gus)
        assert gus.put("/api/me/ssh-key", json={"remote_username": "bob"}).status_code == 200
        (bob,) = users(platform, "bob")  # by default, the account named like him
        assert gus.get("/api/storages/own-home/entries").status_code == 200
        refused = bob.get("/api/storages/own-home/entries")
        assert refused.status_code == 409 and "another Rosetta user" in refused.json()["detail"], refused.text
    finally:
        release(platform, "gus")
