"""Users' own software, end to end on a running platform: a Containerfile built here with the
CLI (its log followed), run as a task through the gateway; a broken one; versions chosen at
start; names per owner and private entries kept private; an operator retiring an entry."""

import json
import os
import re
import threading
import time
import uuid
from functools import partial

import httpx

from tests.e2e.test_http_flow import login

# No RUN step: the build makes no container, so it takes a fraction of a second. The COPY of
# the context (the Containerfile, with a line of its own each run) makes a layer this machine's
# store never had: one it kept from an earlier build cannot stand in for it.
CONTAINERFILE = """\
# A user's own environment, on top of the built-in hello. Run {run}.
FROM localhost/rosetta/hello
LABEL org.opencontainers.image.title="mytool"
ENV BUILT_BY=alice
COPY Containerfile /srv/www/Containerfile.txt
"""
# What the image's user must be able to read and enter, as in the image it is built from.
MODES = "stat -c '%a %U %n' / /tmp /bin /bin/busybox /etc /etc/passwd /home/rosetta /srv /srv/www /srv/www/index.html"
BROKEN = """\
FROM localhost/rosetta/hello
COPY results.txt /srv/www/
"""


def wait_until(check, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_own_software_builds_runs_and_stays_private(platform, tmp_path):
    alice = platform.create_user("alice-sw")
    bob = platform.create_user("bob-sw")
    admin = platform.create_user("ops-sw", admin=True)
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(CONTAINERFILE.format(run=uuid.uuid4().hex))

    # Built with the CLI, its log followed to the end; the entry declares port, BASE_PORT, env.
    built = platform.rosetta(
        "software", "build", "mytool", "-f", str(containerfile), "--version", "1", "--port", "8080", "--base-port",
        "--env", "GREETING=hello-from-entry", "--description", "Alice's tool", token=alice,
    )  # fmt: skip
    assert "Building mytool:1" in built.stdout and "FROM localhost/rosetta/hello" in built.stdout
    assert "Added mytool:1" in built.stdout

    with platform.api(alice) as api, platform.api(bob) as bob_api, platform.api(admin) as admin_api:
        entry = api.get("/api/software/resolve", params={"reference": "mytool"}).raise_for_status().json()
        assert entry["owner"] == "alice-sw" and entry["source"] == "build" and entry["visibility"] == "private"
        assert entry["image_digest"].startswith("sha256:") and entry["environment"] == {"GREETING": "hello-from-entry"}
        # The log says which digest it shows: the catalogue's is the registry's once the pusher has copied it.
        assert (
            f"==> Added mytool:1 to the catalogue (this machine's image digest {entry['image_digest']}; "
            in built.stdout
        )
        assert "the catalogue shows the manifest digest in the platform's registry once" in built.stdout
        assert {"resource": "local", "ready": True, "note": ""} in entry["runs_on"]
        assert_modes_kept(platform, entry["image"])

        # It runs as a task, reached through the gateway (its own file served), with the image's
        # environment and the entry's.
        task = api.post("/api/tasks", json={"software": "mytool", "resource": "local"}).raise_for_status().json()
        assert (task["software"], task["software_version"]) == ("mytool", "1")
        # The digest the catalogue shows: this machine's image's until the pusher has copied it.
        copied = api.get(f"/api/software/{entry['id']}").json()["registry_digest"]
        assert (task["software_digest_kind"], task["software_digest"]) in {
            ("local", entry["image_digest"]),
            ("registry", copied),
        }
        platform.wait_for_task(api, task["id"], {"running"})
        with platform.task_client(task["id"], alice) as interface:
            assert interface.get("/Containerfile.txt").text == containerfile.read_text()
        seen = platform.podman("exec", f"rosetta-{task['id']}", "env").splitlines()
        assert "BUILT_BY=alice" in seen and "GREETING=hello-from-entry" in seen

        # A broken Containerfile: its error is shown, and nothing is registered.
        broken = tmp_path / "Broken"
        broken.write_text(BROKEN)
        failed = platform.rosetta("software", "build", "broken", "-f", str(broken), token=alice, check=False)
        assert failed.returncode == 1
        assert "the build failed, nothing was added" in failed.stderr and "results.txt" in failed.stderr
        assert str(platform.home) not in failed.stdout + failed.stderr  # no path of the platform's
        assert [e["name"] for e in api.get("/api/software", params={"owner": "mine"}).json()] == ["mytool"]
        assert "broken" not in platform.podman("images", "--format", "{{.Repository}}")
        # Refused before it is queued: ADD from a URL would be fetched from this machine.
        refused = api.post(
            "/api/software/builds",
            json={"name": "fetcher", "containerfile": "FROM localhost/rosetta/hello\nADD http://127.0.0.1:22/ /x\n"},
        )
        assert refused.status_code == 400 and "Line 2: ADD from a URL" in refused.json()["detail"]

        # Several versions: NAME:VERSION picks one; NAME alone the newest listed.
        platform.rosetta(
            "software", "add", "mytool", "--image", "localhost/rosetta/hello", "--version", "2", "--base-port",
            token=alice,
        )  # fmt: skip
        assert _resolved(api, "mytool")["version"] == "2"
        second = api.post("/api/tasks", json={"software": "mytool:1", "resource": "local", "name": "v1"}).json()
        assert second["software_version"] == "1"
        api.delete(f"/api/tasks/{second['id']}")
        platform.rosetta("software", "hide", "mytool:2", token=alice)
        assert _resolved(api, "mytool")["version"] == "1"  # hidden: not chosen by name alone...
        assert _resolved(api, "mytool:2")["version"] == "2"  # ...still by its exact version

        # Names are per owner: Bob has his own mytool, and never sees Alice's.
        platform.rosetta("software", "add", "mytool", "--image", "localhost/rosetta/hello", token=bob)
        assert _resolved(bob_api, "mytool")["owner"] == "bob-sw"
        clash = api.post("/api/software", json={"name": "mytool", "version": "2", "image": "localhost/rosetta/hello"})
        assert clash.status_code == 409 and "bob" not in clash.text  # only one's own names clash
        assert [e["owner"] for e in bob_api.get("/api/software", params={"q": "mytool"}).json()] == ["bob-sw"]
        assert bob_api.get(f"/api/software/{entry['id']}").status_code == 404
        refused = bob_api.post("/api/tasks", json={"software": "alice-sw/mytool:1", "resource": "local"})
        assert refused.status_code == 404 and "alice" not in refused.json()["detail"].replace("alice-sw/", "")
        listing = platform.rosetta("software", "list", token=bob).stdout
        assert "mytool" in listing and "alice-sw" not in listing

        # An operator retires Alice's entry: no new task, but her task still shows what it ran.
        retired = platform.rosetta("software", "retire", "alice-sw/mytool:1", token=admin)
        assert "Retired alice-sw/mytool:1" in retired.stdout
        again = api.post("/api/tasks", json={"software": "mytool:1", "resource": "local"})
        assert again.status_code == 404 and "retired" in again.json()["detail"]
        shown = api.get(f"/api/tasks/{task['id']}").json()
        assert (shown["software"], shown["software_version"], shown["software_digest"]) == (
            "mytool",
            "1",
            task["software_digest"],
        )
        staff_view = json.loads(platform.rosetta("software", "show", str(entry["id"]), "--json", token=admin).stdout)
        assert staff_view["status"] == "retired"
        assert admin_api.get("/api/software", params={"all_owners": True, "q": "mytool"}).json()
        api.post(f"/api/tasks/{task['id']}/stop")

        # The pusher has copied the built image to the platform's registry: every resource runs it by digest.
        wait_until(lambda: api.get(f"/api/software/{entry['id']}").json()["registry_state"] == "pushed", 60, "the push")
        copied = api.get(f"/api/software/{entry['id']}").json()
        assert copied["registry_digest"].startswith("sha256:") and copied["digest"] == copied["registry_digest"]


def test_root_in_a_build_is_not_root_on_this_machine(platform):
    """The attacker's view: a RUN step, root in its image, looked at from this machine while it runs."""
    marker = f"whoami-{uuid.uuid4().hex}"
    containerfile = (
        "FROM localhost/rosetta/hello\n"
        "USER root\n"
        # As root in the image it may write anywhere in it, / included, and change owners.
        f"RUN id -u > /uid-in-build && mkdir /made-by-root && chown 1000 /uid-in-build && sleep 1 && echo {marker}\n"
    )
    seen: dict[int, list[int]] = {}  # pid -> real, effective, saved, file-system uid on this machine
    finished = threading.Event()
    watcher = threading.Thread(target=_watch_processes, args=(marker, seen, finished), daemon=True)
    watcher.start()
    alice = platform.create_user("alice-root")
    try:
        with platform.api(alice) as api:
            build = api.post("/api/software/builds", json={"name": "whoami", "containerfile": containerfile}).json()
            build = wait_until(lambda: _finished(api, build["id"]), 120, "the build")
    finally:
        finished.set()
        watcher.join()
    assert build["state"] == "succeeded", build["reason"]
    assert seen, "the RUN step was never seen running"
    for uids in seen.values():  # on this machine it is an unprivileged id, not root
        assert 0 not in uids, f"a RUN step ran as uid {uids} on this machine"
    # Inside, it was root, and what it made is root's (and uid 1000's) in the image, not this machine's ids.
    inspect = "stat -c '%u %n' /made-by-root /uid-in-build; cat /uid-in-build"
    made = platform.podman("run", "--rm", build["image"], "sh", "-c", inspect)
    assert made.split() == ["0", "/made-by-root", "1000", "/uid-in-build", "0"]
    assert_modes_kept(platform, build["image"])


def assert_modes_kept(platform, image: str) -> None:
    """The built image's files keep the modes of the image it is built from, whatever the
    platform's umask: its non-root user can enter / and read what it needs."""
    built = platform.podman("run", "--rm", "--user", "1000", image, "sh", "-c", MODES)
    assert built == platform.podman("run", "--rm", "--user", "1000", "localhost/rosetta/hello", "sh", "-c", MODES)
    root, tmp = (line.split()[0] for line in built.splitlines()[:2])
    assert int(root, 8) & 0o005 == 0o005 and tmp == "1777", built


def test_built_images_are_used_only_through_their_entries(platform):
    """The attacker's view: another user's private build, named in the store, by digest and in the
    platform's registry; and builds of another installation sharing this machine's store."""
    alice = platform.create_user("alice-img")
    bob = platform.create_user("bob-img")
    admin = platform.create_user("ops-img", admin=True)
    with platform.api(alice) as api, platform.api(bob) as bob_api, platform.api(admin) as admin_api:
        containerfile = "FROM localhost/rosetta/hello\nENV RECIPE=alice-only\n"
        build = api.post("/api/software/builds", json={"name": "private-tool", "containerfile": containerfile})
        build = wait_until(lambda: _finished(api, build.json()["id"]), 120, "the build")
        assert build["state"] == "succeeded", build["reason"]
        entry = wait_until(
            lambda: (found := _resolved(api, "private-tool"))["registry_state"] == "pushed" and found, 60, "the push"
        )
        registry = re.search(r"Registry address: (\S+)", platform.rosetta("registry", "list").stdout).group(1)
        repository = entry["image"].rsplit(":", 1)[0]
        names = [
            entry["image"],
            f"{repository}@{entry['image_digest']}",
            f"{registry}/{repository.removeprefix('localhost/')}@{entry['registry_digest']}",
        ]
        # Another installation's build, and one named as builds were before names had the
        # installation in them: this installation made neither, for anyone.
        owner_id = entry["image"].split("/u", 1)[1].split("/", 1)[0]
        elsewhere = [
            platform.build_image("localhost/rosetta-user/0123456789ab/u1/their-tool:1", containerfile),
            platform.build_image(f"localhost/rosetta-user/u{owner_id}/old-tool:1", containerfile),
        ]
        for image in names:
            _refused_to(bob_api, image)
        for image in elsewhere:
            _refused_to(api, image)
            _refused_to(bob_api, image)
        assert not bob_api.get("/api/software/builds").json()  # nothing was queued for him

        # Alice uses her own image as she likes; shared with everyone, it is everyone's to build on.
        assert api.post("/api/software", json={"name": "again", "image": entry["image"]}).status_code == 201
        builds = [
            (api, api.post("/api/software/builds", json={"name": "on-top", "containerfile": f"FROM {names[1]}\n"}))
        ]
        shared = admin_api.patch(f"/api/software/{entry['id']}", json={"visibility": "everyone"})
        assert shared.status_code == 200, shared.text
        on_top = {"name": "on-top", "containerfile": f"FROM {names[0]}\n"}
        builds.append((bob_api, bob_api.post("/api/software/builds", json=on_top)))
        for client, queued in builds:
            assert queued.status_code == 202, queued.text
            done = wait_until(partial(_finished, client, queued.json()["id"]), 120, "the build")
            assert done["state"] == "succeeded", done["reason"]
        # Private again: later tests on this platform see the catalogue they expect.
        admin_api.patch(f"/api/software/{entry['id']}", json={"visibility": "private"})


def _refused_to(client: httpx.Client, image: str) -> None:
    """``image`` can be neither the client's software nor what it builds FROM or copies from."""
    copy = f"FROM localhost/rosetta/hello\nCOPY --from={image} /srv/www /copied\n"
    for attempt, where in (
        (client.post("/api/software", json={"name": "taken", "image": image}), ""),
        (client.post("/api/software/builds", json={"name": "taken", "containerfile": f"FROM {image}\n"}), "Line 1: "),
        (client.post("/api/software/builds", json={"name": "taken", "containerfile": copy}), "Line 2: "),
    ):
        detail = attempt.json()["detail"]
        assert attempt.status_code == 400 and f"{where}{image} is not an image you can use" in detail, detail


def _watch_processes(marker: str, seen: dict[int, list[int]], finished: threading.Event) -> None:
    """The ids, as this machine sees them, of every process whose command line names ``marker``."""
    while not finished.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if marker.encode() not in cmdline.read():
                        continue
                with open(f"/proc/{pid}/status") as status:
                    uids = next(line for line in status if line.startswith("Uid:"))
            except (OSError, StopIteration):
                continue  # gone meanwhile
            seen[int(pid)] = [int(uid) for uid in uids.split()[1:]]
        time.sleep(0.05)


def _finished(api: httpx.Client, build_id: int) -> dict | None:
    build = api.get(f"/api/software/builds/{build_id}").json()
    return build if build["state"] in ("succeeded", "failed") else None


def _resolved(client: httpx.Client, reference: str) -> dict:
    return client.get("/api/software/resolve", params={"reference": reference}).raise_for_status().json()


# An interface with its own HTTP login (BusyBox httpd's Basic authentication).
OWN_LOGIN = """\
FROM localhost/rosetta/hello
CMD ["/bin/sh", "-c", "echo /:ada:lovelace > /tmp/conf && exec httpd -f -v -p 8080 -h /srv/www -c /tmp/conf"]
"""


def open_in_browser(platform, browser: httpx.Client, task: dict) -> httpx.Client:
    """The task's origin as a browser has it after Open: with the gateway's cookie."""
    page = browser.get(f"/tasks/{task['id']}/open").text
    one_time = re.search(r'name="token" value="([^"]+)"', page).group(1)
    origin = httpx.Client(base_url=task["interface_url"], timeout=30)
    handed = origin.post("/.rosetta/login", data={"token": one_time, "next": "/"}, headers={"Origin": platform.url})
    assert handed.status_code == 303
    return origin


def test_an_interface_with_its_own_login_gets_the_browsers_authorization(platform):
    own_token = platform.create_user("ada-login", password="correct horse battery")
    other_token = platform.create_user("ada-login-other")
    image = platform.build_image("localhost/rosetta-test/own-login", OWN_LOGIN)
    tasks = {}
    with platform.api(own_token) as api:
        for name, own in (("own-login", True), ("rosetta-login", False)):
            added = api.post("/api/software", json={"name": name, "image": image, "own_authorization": own})
            assert added.status_code == 201 and added.json()["own_authorization"] is own, added.text
            task_id = platform.start_task(api, software=name)
            tasks[name] = platform.wait_for_task(api, task_id, {"running", "failed", "exited"})
            assert tasks[name]["phase"] == "running", tasks[name]
    browser = login(platform, "ada-login", "correct horse battery")

    # Declared as doing its own login: the browser's Basic credentials reach it, and without them
    # the interface itself asks for them.
    origin = open_in_browser(platform, browser, tasks["own-login"])
    assert origin.get("/", auth=("ada", "lovelace")).status_code == 200
    asked = origin.get("/")
    assert asked.status_code == 401 and "www-authenticate" in asked.headers
    # A Rosetta API token still belongs to the platform: another user's is refused at the gateway.
    assert platform.task_client(tasks["own-login"]["id"], other_token).get("/").status_code == 403
    # By default the gateway sends the task's secret instead of whatever the browser sent.
    origin = open_in_browser(platform, browser, tasks["rosetta-login"])
    assert origin.get("/", auth=("ada", "lovelace")).status_code == 401
