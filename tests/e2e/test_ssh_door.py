"""The SSH front door with the system's OpenSSH client against a real `rosetta run` and the real
`localhost/rosetta/ssh` image: keys registered by the CLI and the API, `ssh -J` with the
command the platform shows, scp, sftp and `ssh -X` end to end to the task's own sshd, and
everything the door refuses."""

import contextlib
import json
import os
import re
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.instance import Platform

SSH_IMAGE = "localhost/rosetta/ssh"
pytestmark = pytest.mark.podman


def keygen(directory: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> Path:
    """A fresh key pair; the private key's path (the public one is next to it, .pub)."""
    path = directory / name
    argv = ["ssh-keygen", "-q", "-t", kind, *(["-b", str(bits)] if bits else []), "-N", "", "-C", name, "-f", path]
    subprocess.run(argv, check=True)
    return path


def client_config(directory: Path, name: str, key: Path) -> Path:
    """An ssh_config for one user: their key only, host keys pinned in one known_hosts file
    (the door's and the task's), nothing asked. ssh passes -F on to the jump host's ssh too."""
    path = directory / f"{name}.ssh_config"
    path.write_text(
        "Host *\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        "    BatchMode yes\n"
        f"    UserKnownHostsFile {directory / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    ConnectTimeout 20\n"
    )
    return path


def openssh(program: str, config: Path, *args: str) -> subprocess.CompletedProcess:
    return run([program, "-F", str(config), *args])


def with_options(command: str, config: Path, *extra: str) -> list[str]:
    """The platform's own command line, with this test's ssh_config (and options) inserted."""
    argv = shlex.split(command)
    return [argv[0], "-F", str(config), *extra, *argv[1:]]


def open_session(argv: list[str]) -> subprocess.Popen:
    """A session in the task that would last ten minutes, once it is under way."""
    session = subprocess.Popen(argv + ["echo under way; sleep 600"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert session.stdout.readline().strip() == "under way", session.stderr.read()
    return session


def session_end(session: subprocess.Popen) -> float:
    """How long the session went on from now; it must have been ended by the door, and told why."""
    began = time.monotonic()
    try:
        session.wait(timeout=20)
    except subprocess.TimeoutExpired:
        session.kill()
        raise AssertionError("the session went on") from None
    took = time.monotonic() - began
    assert session.returncode == 255 and "Your key or account was withdrawn" in session.stderr.read()
    assert took < 5, f"the session went on for {took:.1f} s"
    return took


def run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def xvfb():
    """A virtual X display on this machine; its DISPLAY."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=[write],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as numbers:
            display = numbers.readline().strip()
        assert display.isdigit(), "Xvfb did not start"
        yield f":{display}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A Rosetta of this module's own: without a registry, so that the large ssh image is not
    copied into one (it runs here)."""
    instance = Platform(
        tmp_path_factory.mktemp("rosetta-ssh"),
        ssh_door=True,
        settings={"ROSETTA_REGISTRY_LISTEN": "off", "ROSETTA_DEMO_SOFTWARE": "hello,ssh"},
    )
    instance.set_up()
    # The image as this checkout describes it (≈1 s when it is up to date): the store is shared.
    instance.rosetta("build-image", "ssh", timeout=900)
    instance.start()
    yield instance
    instance.stop()


def ssh_software(platform) -> str:
    """The catalogue's `ssh` entry, added by an operator when the demo catalogue lacks it."""
    admin = platform.create_user(f"ssh-admin-{secrets.token_hex(3)}", admin=True)
    with platform.api(admin) as api:
        if not any(s["name"] == "ssh" for s in api.get("/api/software").json()):
            added = api.post(
                "/api/software",
                json={
                    "name": "ssh",
                    "image": SSH_IMAGE,
                    "interface_protocol": "ssh",
                    "interface_port": 2222,
                    "honours_base_port": True,
                    "visibility": "everyone",
                },
            )
            assert added.status_code == 201, added.text
    return "ssh"


def test_ssh_front_door_with_openssh(platform, tmp_path):
    software = ssh_software(platform)
    ada, bob = platform.create_user("ada"), platform.create_user("bob")
    ada_key, bob_key = keygen(tmp_path, "ada_key"), keygen(tmp_path, "bob_key")

    # Keys are unique per user, not across users: bob registering ada's public key (public keys
    # are public) neither locks her out nor learns that she has it.
    with platform.api(bob) as api:
        mine_too = api.post("/api/me/keys", json={"public_key": Path(f"{ada_key}.pub").read_text()})
        assert mine_too.status_code == 201, mine_too.text
    # Keys: the CLI for ada, the API for bob; duplicates and non-keys get plain refusals.
    added = platform.rosetta("keys", "add", f"{ada_key}.pub", token=ada).stdout
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{ada_key}.pub"], capture_output=True, text=True)
    assert fingerprint.stdout.split()[1] in added and "ED25519" in added
    again = platform.rosetta("keys", "add", f"{ada_key}.pub", token=ada, check=False)
    assert again.returncode == 1 and "registered this key already" in again.stderr
    private = platform.rosetta("keys", "add", str(ada_key), token=ada, check=False)
    assert private.returncode == 2 and "looks like a private key" in private.stderr
    with platform.api(bob) as api:
        assert api.post("/api/me/keys", json={"public_key": Path(f"{bob_key}.pub").read_text()}).status_code == 201
        again = api.post("/api/me/keys", json={"public_key": Path(f"{ada_key}.pub").read_text()})
        assert again.status_code == 409 and "You have registered this key already" in again.json()["detail"]
        small = Path(f"{keygen(tmp_path, 'small', 'rsa', 1024)}.pub").read_text()
        weak = api.post("/api/me/keys", json={"public_key": small})
        assert weak.status_code == 400 and "at least 2048" in weak.json()["detail"]
        assert api.post("/api/me/keys", json={"public_key": "ssh-ed25519 nonsense"}).status_code == 400
        door = api.get("/api/ssh").json()
    listed = json.loads(platform.rosetta("keys", "list", "--json", token=ada).stdout)
    assert [key["name"] for key in listed] == ["ada_key"]

    # The door's host key is made once, private, and pinned here before the first connection.
    host_key = platform.home / "ssh_host_ed25519_key"
    assert host_key.stat().st_mode & 0o777 == 0o600
    assert door["port"] == platform.ssh_port and door["known_hosts"].startswith(f"[localhost]:{platform.ssh_port} ")
    (tmp_path / "known_hosts").write_text(door["known_hosts"] + "\n")

    started = platform.rosetta("task", "start", software, "--on", "local", "--wait", "--json", token=ada)
    task = json.loads(started.stdout)
    assert task["phase"] == "running", task["events"]
    shown = json.loads(platform.rosetta("task", "show", task["id"], "--json", token=ada).stdout)
    command = f"ssh -J ada@localhost:{platform.ssh_port} rosetta@{task['id']}"
    assert shown["ssh_command"] == command and shown["ssh"]["proxy_jump"] == f"ada@localhost:{platform.ssh_port}"
    # The task's own sshd: its fresh host key is in its log; pin it too (the client checks it end to end).
    logs = platform.rosetta("task", "logs", task["id"], token=ada).stdout
    found = re.search(r"rosetta-sshd: host key (ssh-ed25519 \S+)", logs)
    assert found, logs
    task_host_key = found.group(1)
    # Scripts pin it from the API (and people read it in `task show`): the fingerprint ssh asks about.
    printed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=task_host_key, capture_output=True, text=True)
    task_fingerprint = printed.stdout.split()[1]
    detail = json.loads(platform.rosetta("task", "show", task["id"], "--json", token=ada).stdout)
    assert task_fingerprint.startswith("SHA256:") and detail["ssh"]["host_key_fingerprint"] == task_fingerprint
    assert f"host key:  {task_fingerprint}" in platform.rosetta("task", "show", task["id"], token=ada).stdout
    with (tmp_path / "known_hosts").open("a") as known_hosts:
        known_hosts.write(f"{task['id']} {task_host_key}\n")

    ada_config = client_config(tmp_path, "ada", ada_key)
    bob_config = client_config(tmp_path, "bob", bob_key)

    # The command the platform shows runs a command in the task.
    began = time.monotonic()
    inside = run(with_options(command, ada_config) + ["echo", "hello from", "$(id -un)"])
    took = time.monotonic() - began
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == "hello from rosetta"

    # scp and sftp through the same jump, with the ProxyJump form shown for them.
    jump = f"ProxyJump={shown['ssh']['proxy_jump']}"
    payload = tmp_path / "payload.bin"
    payload.write_bytes(secrets.token_bytes(256 * 1024))
    destination = shown["ssh"]["destination"]
    copied = openssh("scp", ada_config, "-o", jump, str(payload), f"{destination}:payload.bin")
    assert copied.returncode == 0, copied.stderr
    back = tmp_path / "back.bin"
    batch = tmp_path / "sftp-batch"
    batch.write_text(f"ls -l payload.bin\nget payload.bin {back}\n")
    sftp = openssh("sftp", ada_config, "-o", jump, "-b", str(batch), destination)
    assert sftp.returncode == 0, sftp.stderr
    assert back.read_bytes() == payload.read_bytes()

    # ssh -X: an X program in the task draws on this machine's display.
    with xvfb() as display:
        env = {**os.environ, "DISPLAY": display}
        x = run(with_options(command, ada_config, "-X") + ["echo $DISPLAY; xterm -e true && echo x-ok"], env=env)
    assert x.returncode == 0, x.stderr
    assert x.stdout.split() == ["localhost:10.0", "x-ok"]

    # Refusals: another user's key for ada's account, bob's own login to ada's task, a task
    # that does not exist (said the same way), and the door itself opens no shell.
    not_ada = run(with_options(command, bob_config) + ["true"])
    assert not_ada.returncode == 255 and "Permission denied (publickey)" in not_ada.stderr
    as_bob = command.replace("-J ada@", "-J bob@")
    not_bobs = run(with_options(as_bob, bob_config) + ["true"])
    assert not_bobs.returncode == 255 and f"You have no task {task['id']}" in not_bobs.stderr
    missing = run(with_options(as_bob.replace(task["id"], "tnothere1"), bob_config) + ["true"])
    assert "You have no task tnothere1" in missing.stderr
    # Who logs in is whom the login names: ada's key, which bob registered too, makes her bob
    # there, and bob has no such task.
    as_bob_with_adas_key = run(with_options(as_bob, ada_config) + ["true"])
    assert as_bob_with_adas_key.returncode == 255 and f"You have no task {task['id']}" in as_bob_with_adas_key.stderr
    door = ["-p", str(platform.ssh_port), "ada@localhost"]
    shell = openssh("ssh", ada_config, *door)
    assert shell.returncode == 1 and "opens no shell" in shell.stderr

    # A client offering key after key: five strangers, then hers, is in (OpenSSH's MaxAuthTries
    # is 6); nine strangers end the connection before hers is tried.
    strangers = [f"-i{keygen(tmp_path, f'stranger{n}')}" for n in range(9)]  # offered before the config's
    five = openssh("ssh", ada_config, *strangers[:5], *door)
    assert five.returncode == 1 and "opens no shell" in five.stderr
    nine = openssh("ssh", ada_config, *strangers, *door)
    assert nine.returncode == 255 and "Too many authentication attempts" in nine.stderr

    # A removed key, and a deactivated account, lose the door: new connections are refused,
    # and open sessions through it end within seconds.
    session = open_session(with_options(command, ada_config))
    platform.rosetta("keys", "remove", fingerprint.stdout.split()[1], token=ada)
    key_ended = session_end(session)
    removed = run(with_options(command, ada_config) + ["true"])
    assert removed.returncode == 255 and "Permission denied (publickey)" in removed.stderr

    platform.rosetta("keys", "add", f"{ada_key}.pub", token=ada)  # the task still accepts it: the same key
    session = open_session(with_options(command, ada_config))
    deactivate = "from django.contrib.auth.models import User; u = User.objects.get(username='ada'); "
    platform.rosetta("manage", "shell", "-c", deactivate + "u.is_active = False; u.save()")
    account_ended = session_end(session)
    gone = openssh("ssh", ada_config, *door)
    assert gone.returncode == 255 and "Permission denied (publickey)" in gone.stderr
    print(f"open sessions ended {key_ended:.1f} s after the key's removal, {account_ended:.1f} s after deactivation")

    print(f"ssh -J command round trip: {took * 1000:.0f} ms")


def test_staff_reach_anothers_ssh_task_through_the_door_as_through_the_gateway(platform, tmp_path):
    """One access rule for every door (docs/access.md): the door lets staff through to any task,
    as the HTTP gateway does (tests/integration/test_gateway_proxy.py), and not another user.
    Past the door, the task's own sshd judges the key end to end: it accepts its owner's keys."""
    software = ssh_software(platform)
    owner, other = platform.create_user("cyd"), platform.create_user("dev")
    staff = platform.create_user("sam", admin=True)
    keys = {name: keygen(tmp_path, f"{name}_key") for name in ("cyd", "dev", "sam")}
    for name, token in (("cyd", owner), ("dev", other), ("sam", staff)):
        with platform.api(token) as api:
            added = api.post("/api/me/keys", json={"public_key": Path(f"{keys[name]}.pub").read_text()})
            assert added.status_code == 201, added.text
            door = api.get("/api/ssh").json()
    (tmp_path / "known_hosts").write_text(door["known_hosts"] + "\n")

    started = platform.rosetta("task", "start", software, "--on", "local", "--wait", "--json", token=owner)
    task = json.loads(started.stdout)
    assert task["phase"] == "running", task["events"]
    found = re.search(
        r"rosetta-sshd: host key (ssh-ed25519 \S+)", platform.rosetta("task", "logs", task["id"], token=owner).stdout
    )
    assert found
    with (tmp_path / "known_hosts").open("a") as known_hosts:
        known_hosts.write(f"{task['id']} {found.group(1)}\n")

    def through_the_door(name: str) -> subprocess.CompletedProcess:
        config = client_config(tmp_path, name, keys[name])
        command = f"ssh -J {name}@localhost:{platform.ssh_port} rosetta@{task['id']}"
        return run(with_options(command, config) + ["echo", "in", "$(id -un)"])

    by_owner = through_the_door("cyd")
    assert by_owner.returncode == 0 and by_owner.stdout.strip() == "in rosetta", by_owner.stderr
    # Staff reach the task's own sshd (its pinned host key checked, so it is the task that
    # answers), which accepts its owner's keys only.
    by_staff = through_the_door("sam")
    assert "You have no task" not in by_staff.stderr, by_staff.stderr
    assert by_staff.returncode == 255 and f"rosetta@{task['id']}: Permission denied (publickey)" in by_staff.stderr
    by_other = through_the_door("dev")
    assert by_other.returncode == 255 and f"You have no task {task['id']}" in by_other.stderr
