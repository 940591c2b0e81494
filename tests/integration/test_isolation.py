"""A task is a boundary, tried the way an attacker would: from inside one user's task (its own
code, no special rights), against another user's task, services of this machine, link-local
addresses and other machines; and from another account of this machine against a task.

Every connection attempt goes to a container or namespace the test itself started, one at a
time; none to a range, none to another host.
"""

import errno
import ipaddress
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.netns import host_listener, machine

ATTEMPT = 2  # seconds a blocked connection attempt is given


def reaches(platform, task_id: str, address: str, port: int) -> bool:
    """Whether code inside the task gets an HTTP answer from address:port (busybox nc, run as
    the task's own user; busybox's wget crashes on some answers)."""
    attempt = subprocess.run(
        ["podman", "exec", "-i", f"rosetta-{task_id}", "nc", "-w", str(ATTEMPT), address, str(port)],
        input="GET / HTTP/1.0\r\n\r\n", env=platform.podman_env, capture_output=True, text=True,
    )  # fmt: skip
    return attempt.stdout.startswith("HTTP/")


def answers(address: str, port: int) -> bool:
    """Whether this machine (the platform's account) gets an HTTP answer from address:port."""
    try:
        return httpx.get(f"http://{address}:{port}/", timeout=ATTEMPT).status_code < 500
    except httpx.HTTPError:
        return False


def inspect(platform, task_id: str) -> dict:
    return json.loads(platform.podman("inspect", f"rosetta-{task_id}"))[0]


def address_of(platform, task_id: str) -> tuple[str, str]:
    """The task's address on its network, and this machine's address on that network."""
    [network] = inspect(platform, task_id)["NetworkSettings"]["Networks"].values()
    return network["IPAddress"], network["Gateway"]


def link_local_of(mac: str) -> str:
    """The IPv6 link-local address an interface with this MAC gives itself (EUI-64) when IPv6
    is on there: the address an attacker tries."""
    octets = bytes.fromhex(mac.replace(":", ""))
    interface_id = bytes([octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]])
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *[0] * 6]) + interface_id))


def task_link_local(platform, task_id: str) -> str:
    [network] = inspect(platform, task_id)["NetworkSettings"]["Networks"].values()
    return link_local_of(network["MacAddress"])


def bridge_of(platform, task_id: str) -> str:
    """This machine's interface on the task's network."""
    [network] = json.loads(platform.podman("network", "inspect", f"rosetta-{task_id}"))
    return network["network_interface"]


def link_local_on(interface: str) -> str:
    """This machine's IPv6 link-local address on ``interface`` (once usable), or else the one it
    would have."""
    deadline = time.monotonic() + 5
    while True:  # duplicate address detection first: a tentative address answers nothing
        shown = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "link"],
                               capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        if "tentative" not in shown or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if "inet6" in shown:
        return shown[shown.index("inet6") + 1].split("/")[0]
    return link_local_of(Path(f"/sys/class/net/{interface}/address").read_text().strip())


@pytest.fixture(scope="module")
def tasks(platform):
    """Two users' hello tasks: the attacker's and the victim's."""
    ids = {}
    for user in ("attacker", "victim"):
        token = platform.create_user(f"iso-{user}")
        with platform.api(token) as api:
            ids[user] = platform.start_task(api, name=f"{user}-task", environment={"SECRET": f"{user}'s secret"})
            platform.wait_for_task(api, ids[user], {"running"})
    return ids


def test_a_task_cannot_reach_another_users_task(platform, tasks):
    victim, _ = address_of(platform, tasks["victim"])
    assert answers(victim, 8080)
    assert not reaches(platform, tasks["attacker"], victim, 8080)  # the platform reaches it; the attacker does not


def test_a_task_cannot_reach_services_of_this_machine(platform, tasks):
    _, this_machine = address_of(platform, tasks["attacker"])
    with host_listener() as port:
        assert answers("127.0.0.1", port)
        assert not reaches(platform, tasks["attacker"], this_machine, port)


def test_a_task_cannot_reach_link_local_addresses(platform, tasks):
    with machine("169.254.77.1", "169.254.77.2") as (address, port):  # where cloud metadata services answer
        assert not reaches(platform, tasks["attacker"], address, port)


def test_a_task_network_never_carries_ipv6(platform, tasks):
    """The firewall is IPv4's: no interface of a task's network has had IPv6 at any moment
    (it would have its settings under /proc/sys/net/ipv6/conf), neither the task's nor this
    machine's end. The task keeps ``::1`` on its own loopback."""
    inside = subprocess.run(
        ["podman", "exec", f"rosetta-{tasks['attacker']}", "sh", "-c",
         "cat /proc/net/if_inet6; ls /proc/sys/net/ipv6/conf"],
        env=platform.podman_env, capture_output=True, text=True,
    )  # fmt: skip
    assert inside.returncode == 0 and "eth0" not in inside.stdout and " lo\n" in inside.stdout
    bridge = bridge_of(platform, tasks["attacker"])
    ports = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    this_machine = [bridge, *(line.split(":")[1].strip().split("@")[0] for line in ports.splitlines())]
    assert len(this_machine) == 2 and not any(Path(f"/proc/sys/net/ipv6/conf/{name}").exists() for name in this_machine)


def test_a_task_cannot_reach_this_machine_over_ipv6_link_local(platform, tasks):
    this_machine = link_local_on(bridge_of(platform, tasks["attacker"]))
    with host_listener() as port:
        with socket.create_connection(("::1", port), timeout=ATTEMPT):
            pass  # it listens on IPv6 too
        assert not reaches(platform, tasks["attacker"], f"{this_machine}%eth0", port)


def test_a_task_cannot_reach_another_task_over_ipv6_link_local(platform, tasks):
    assert not reaches(platform, tasks["attacker"], f"{task_link_local(platform, tasks['victim'])}%eth0", 8080)


def test_another_account_cannot_reach_a_task_over_ipv6_link_local(platform, tasks):
    victim, bridge = task_link_local(platform, tasks["victim"]), bridge_of(platform, tasks["victim"])
    probe = [
        "python3",
        "-c",
        f"import socket; socket.create_connection(('{victim}%{bridge}', 8080), timeout={ATTEMPT})",
    ]
    assert subprocess.run(["runuser", "-u", "nobody", "--", *probe], capture_output=True).returncode != 0


def test_a_builds_run_steps_speak_no_ipv6(platform):
    """A build's RUN steps are a user's code on a network from the task pool, like a task's."""
    token = platform.create_user("iso-build")
    containerfile = (
        "FROM localhost/rosetta/hello\nRUN cat /proc/net/if_inet6 && test ! -e /proc/sys/net/ipv6/conf/eth0\n"
    )
    with platform.api(token) as api:
        build = api.post("/api/software/builds", json={"name": "no-ipv6", "containerfile": containerfile}).json()
        deadline = time.monotonic() + 120
        while build["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            build = api.get(f"/api/software/builds/{build['id']}").json()
    assert build["state"] == "succeeded", build["log"][-2000:]


def test_outbound_access_is_an_operator_setting_per_resource(platform):
    platform.rosetta("manage", "shell", "-c", (
        "from rosetta.computing.models import Resource; "
        "Resource.objects.create(name='sealed', task_outbound=False, max_cpus=1, max_memory_mb=1024)"
    ))  # fmt: skip
    token = platform.create_user("iso-outbound")
    with platform.api(token) as api, machine("192.168.77.1", "192.168.77.2") as (address, port):
        open_task = platform.start_task(api, name="open")
        sealed = api.post("/api/tasks", json={"software": "hello", "resource": "sealed", "name": "sealed"}).json()["id"]
        for task_id in (open_task, sealed):
            platform.wait_for_task(api, task_id, {"running"})
        assert reaches(platform, open_task, address, port)  # another machine, reached by default
        assert not reaches(platform, sealed, address, port)


def test_only_the_platforms_account_reaches_a_task(platform, tasks):
    victim, _ = address_of(platform, tasks["victim"])
    probe = ["python3", "-c", f"import socket; socket.create_connection(('{victim}', 8080), timeout={ATTEMPT})"]
    assert subprocess.run(probe).returncode == 0  # the platform's account (root, here)
    assert subprocess.run(["runuser", "-u", "nobody", "--", *probe], capture_output=True).returncode != 0


def test_root_in_a_task_is_not_root_on_this_machine(platform):
    image = platform.build_image(
        "localhost/rosetta-test/as-root",
        'FROM localhost/rosetta/hello\nUSER 0\nCMD ["/bin/sh", "-c", "exec httpd -f -p 8080 -h /srv/www"]\n',
    )
    token = platform.create_user("iso-root")
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "as-root", "image": image}).status_code == 201
        task_id = platform.start_task(api, software="as-root")
        platform.wait_for_task(api, task_id, {"running"})

    def inside(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", f"rosetta-{task_id}", *argv], env=platform.podman_env,
                              capture_output=True, text=True)  # fmt: skip

    assert inside("id", "-u").stdout.strip() == "0"
    host_pid = inspect(platform, task_id)["State"]["Pid"]
    with open(f"/proc/{host_pid}/status") as status:
        host_uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
    assert host_uid != "0"  # the same process, seen from this machine
    capabilities = dict(
        line.split(":\t") for line in inside("cat", "/proc/self/status").stdout.splitlines() if ":\t" in line
    )
    bounding = int(capabilities["CapBnd"], 16)
    assert (
        not bounding & (1 << 13) and not bounding & (1 << 21) and not bounding & (1 << 27)
    )  # NET_RAW, SYS_ADMIN, MKNOD
    assert capabilities["NoNewPrivs"].strip() == "1"
    assert inside("touch", "/etc/planted").returncode != 0  # a read-only root...
    assert inside("touch", "/tmp/scratch", "/home/rosetta/notes").returncode == 0  # ...with private writable space


def test_the_address_of_a_task_that_is_gone_stays_on_this_machine(platform):
    """Once a task's network is gone, its address is unreachable here at once: nothing meant
    for the task pool leaves this machine by its default route (where something else could
    answer the platform's probe or gateway)."""
    token = platform.create_user("iso-gone")
    with platform.api(token) as api:
        task_id = platform.start_task(api, name="gone")
        platform.wait_for_task(api, task_id, {"running"})
        address, _ = address_of(platform, task_id)
        api.post(f"/api/tasks/{task_id}/stop")
        platform.wait_for_task(api, task_id, {"stopped"})
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    assert route.returncode != 0 and "No route to host" in route.stderr, route.stdout
    began = time.monotonic()
    with pytest.raises(OSError) as refused:
        socket.create_connection((address, 8080), timeout=ATTEMPT)
    assert refused.value.errno == errno.EHOSTUNREACH and time.monotonic() - began < 0.5
