"""The SSH front door's pure parts: which keys are taken, what a destination names, who may
reach which task, and where users are told to connect."""

import subprocess

import pytest
from django.core.exceptions import ValidationError

from rosetta.accounts.ssh_keys import authorized_keys_value, parse_public_key
from rosetta.gateway.ssh_access import door_address, host_port
from rosetta.gateway.ssh_door import TaskFacts, refusal, task_id_from_destination


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Public keys made by ssh-keygen, by kind."""
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for name, argv in {
        "ed25519": ["-t", "ed25519"],
        "ecdsa": ["-t", "ecdsa", "-b", "384"],
        "rsa2048": ["-t", "rsa", "-b", "2048"],
        "rsa1024": ["-t", "rsa", "-b", "1024"],
    }.items():
        path = directory / name
        subprocess.run(["ssh-keygen", "-q", *argv, "-N", "", "-C", f"me@{name}", "-f", path], check=True)
        fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{path}.pub"], capture_output=True, text=True)
        made[name] = (path.read_text(), (directory / f"{name}.pub").read_text(), fingerprint.stdout.split()[1])
    return made


@pytest.mark.parametrize(
    ("name", "kind", "bits"), [("ed25519", "ED25519", 256), ("ecdsa", "ECDSA", 384), ("rsa2048", "RSA", 2048)]
)
def test_accepted_keys_are_kept_canonical_with_ssh_keygens_fingerprint(keys, name, kind, bits):
    _, public, fingerprint = keys[name]
    parsed = parse_public_key(f"  {public}\n")
    assert (parsed.kind, parsed.bits, parsed.fingerprint, parsed.comment) == (kind, bits, fingerprint, f"me@{name}")
    assert parsed.public_key == " ".join(public.split()[:2])  # no comment: it goes into a ";"-separated list


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "Paste a public key"),
        ("ssh-ed25519 AAAAnot-base64", "not an SSH public key"),
        ("hello", "not an SSH public key"),
    ],
)
def test_what_is_not_a_key_is_said_plainly(text, said):
    with pytest.raises(ValidationError, match=said):
        parse_public_key(text)


def test_weak_private_and_several_keys_are_refused(keys):
    with pytest.raises(ValidationError, match="at least 2048"):
        parse_public_key(keys["rsa1024"][1])
    with pytest.raises(ValidationError, match="private key"):
        parse_public_key(keys["ed25519"][0])
    with pytest.raises(ValidationError, match="one public key at a time"):
        parse_public_key(keys["ed25519"][1] + keys["ecdsa"][1])
    dsa = (
        "ssh-dss "
        "AAAAB3NzaC1kc3MAAACBAMGkYtv2LGxCuHIhJBTVWR4EQ6JMdbDsZQZR7SXWPmxLILeMw7+He4lDkL/mjQDRCU26g27rSB+Reinl"
        "yCDItsHTig/Do+47/3QHuS9WuVvkuohlMvOCT9r5Pcb8gPLqr2gWYtZ6lp9fLqnLVr9ztdMDe4ns98gfv8eguQBKyAZdAAAAFQCN"
        "TzzjTlHsv6CFz2KiTGvlMrABvwAAAIByOG51u0Ku/Pfgu/MKEJbEL+E0S4vZ4Y88lXmqY3NTe6VhQWBE4D9sRmCnU5jZaR1kWBM7"
        "btYFxwwo5KOuUWMmtM8DgyfHlWjpPWyyjG2N+HzI23Q6FHqLkQJYVYUsJF+6YYx2blAk4JB4QIYVBwa2BFJGISM1sBjbMIk4izAB"
        "hgAAAIBVjMuuslpXA0QUF1+v0NMmmzhyVqQKlGLfoAT5d/Qjdy2VYGIRBzf3mzpd2enGkDk/PcG6yRS95fsilvc6foZf8wf6E0U2"
        "W9NYxZrZ0iVJhem+Q9RKyFimQyS2cYhq3JL3hRQu9H335MDMXUKVKDWl9ZaLAmh+VXCkr7aQUNtsSg=="
    )
    with pytest.raises(ValidationError, match="ssh-dss keys are not accepted"):
        parse_public_key(dsa)


def test_the_images_convention_separates_keys_with_semicolons(keys):
    value = authorized_keys_value([parse_public_key(keys[n][1]).public_key for n in ("ed25519", "ecdsa")])
    assert value.count(";") == 1 and "\n" not in value and "me@" not in value


@pytest.mark.parametrize(
    ("destination", "task_id"),
    [
        ("t1234abcd", "t1234abcd"),
        ("T1234ABCD", "t1234abcd"),
        ("t1234abcd.rosetta", "t1234abcd"),  # a ~/.ssh/config pattern
        ("t1234abcd.localhost.", "t1234abcd"),
        ("", None),
        ("../etc", None),
        ("t-1", None),
        ("a" * 17, None),
    ],
)
def test_the_destination_names_a_task_by_its_first_label(destination, task_id):
    assert task_id_from_destination(destination) == task_id


ADA, BOB = 1, 2
RUNNING = TaskFacts("t1", ADA, "running", "ssh", ("10.123.0.2", 2222))


@pytest.mark.parametrize(
    ("task", "user", "said"),
    [
        (RUNNING, ADA, None),
        (RUNNING, BOB, "You have no task t1"),  # another's task reads as a missing one
        (None, ADA, "You have no task t1"),
        (TaskFacts("t1", ADA, "running", "http", ("10.123.0.2", 80)), ADA, "has no SSH interface"),
        (TaskFacts("t1", ADA, "starting", "ssh", ("10.123.0.2", 2222)), ADA, "is starting"),
        (TaskFacts("t1", ADA, "stopped", "ssh", None), ADA, "is stopped"),
        (TaskFacts("t1", ADA, "running", "ssh", None), ADA, "no endpoint yet"),
    ],
)
def test_only_the_owner_reaches_a_running_ssh_task(task, user, said):
    reason = refusal("t1", task, user)
    assert reason is None if said is None else said in reason


@pytest.mark.parametrize(
    ("port", "address", "public_url", "expected"),
    [
        ("2222", "", "http://localhost:8000", ("localhost", 2222)),
        ("2222", "", "https://rosetta.example.org", ("rosetta.example.org", 2222)),
        ("2222", "ssh.example.org", "https://rosetta.example.org", ("ssh.example.org", 2222)),
        ("2222", "ssh.example.org:22", "https://rosetta.example.org", ("ssh.example.org", 22)),
        ("2222", "[2001:db8::1]:2200", "https://rosetta.example.org", ("2001:db8::1", 2200)),
        ("off", "", "http://localhost:8000", None),
    ],
)
def test_where_users_are_told_to_connect(settings, port, address, public_url, expected):
    settings.SSH_PORT, settings.SSH_ADDRESS, settings.PUBLIC_URL = port, address, public_url
    assert door_address() == expected


def test_host_port_as_openssh_reads_it():
    assert host_port("localhost", 2222) == "localhost:2222"
    assert host_port("door.example.org", 22) == "door.example.org"
    assert host_port("::1", 2222) == "[::1]:2222"


def test_every_machine_presents_the_host_key_the_site_gives_it(keys, tmp_path, settings, monkeypatch):
    """ROSETTA_SSH_HOST_KEY: doors on several machines behind one address present one key."""
    from rosetta.gateway.ssh_access import host_key

    private, public, _ = keys["ed25519"]
    (tmp_path / "site_key").write_text(private)
    settings.SSH_HOST_KEY = str(tmp_path / "site_key")
    presented = set()
    for machine in ("a", "b"):
        monkeypatch.setenv("ROSETTA_HOME", str(tmp_path / machine))
        host_key.cache_clear()  # each machine's door reads it afresh (an earlier test's key is cached)
        presented.add(host_key().export_public_key().decode().split()[1])
        assert not (tmp_path / machine).exists()  # nothing made in the machine's own home
    host_key.cache_clear()  # later tests get this process's own key again
    assert presented == {public.split()[1]}


STAFF = 3


@pytest.mark.parametrize(
    ("task", "user", "staff", "said"),
    [
        (RUNNING, STAFF, True, None),  # staff reach every task, as through the HTTP gateway
        (RUNNING, BOB, False, "You have no task t1"),
        (None, STAFF, True, "You have no task t1"),
        (TaskFacts("t1", ADA, "starting", "ssh", ("10.123.0.2", 2222)), STAFF, True, "is starting"),
    ],
)
def test_staff_reach_any_running_ssh_task(task, user, staff, said):
    reason = refusal("t1", task, user, staff)
    assert reason is None if said is None else said in reason


@pytest.mark.parametrize(("user", "staff"), [(ADA, False), (BOB, False), (STAFF, True), (ADA, True)])
def test_the_door_and_the_http_gateway_follow_one_rule(user, staff):
    from rosetta.gateway.routes import Route, RouteTable

    table = RouteTable(staff_ids=frozenset({user}) if staff else frozenset())
    route = Route("t1", "t1", ADA, "running", ("10.123.0.2", 2222))
    assert table.may_access(user, route) == (refusal("t1", RUNNING, user, staff) is None)
