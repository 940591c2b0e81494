"""The SSH front door: `ssh -J` through Rosetta's door against the same jump through OpenSSH's
own sshd, and against no jump at all (straight to the task's address, which only the
platform's account may open), to one running `ssh` task. Side by side in one run, alternating.

    .venv/bin/python benchmarks/ssh_door.py [--runs 20] [--megabytes 64]

Prints the time of `ssh ... true` (login and one command) per path, and scp throughput of a
file of --megabytes. The door's cost is judged against OpenSSH as a jump host: the ratio
door/openssh-jump at the median (target ≤ 1.2×) and for throughput (target ≥ 0.8×). Run as
root (the platform's account here, and the local sshd it starts). Never gates CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from support import own_platform

from tests.instance import free_port

SSH_IMAGE = "localhost/rosetta/ssh"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@contextlib.contextmanager
def openssh_jump(directory: Path, client_key: Path):
    """OpenSSH's sshd on 127.0.0.1, allowing only TCP forwarding for root with ``client_key``:
    the jump host people would otherwise put in front."""
    host_key = keygen(directory / "sshd_host_key")
    (directory / "sshd_authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {host_key}\nPidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'sshd_authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "AllowTcpForwarding yes\nX11Forwarding no\nPermitTTY no\nForceCommand /bin/false\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    known = f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text().split(' ')[0]} "
    known += Path(f"{host_key}.pub").read_text().split(" ")[1]
    try:
        yield f"root@127.0.0.1:{port}", known
    finally:
        server.terminate()
        server.wait()


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def ms(values: list[float]) -> str:
    values = sorted(v * 1000 for v in values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):>9.1f}{p90:>9.1f}{values[0]:>9.1f}{values[-1]:>9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="rosetta-bench-ssh-") as scratch,
        own_platform(ssh_door=True, ROSETTA_REGISTRY_LISTEN="off", ROSETTA_DEMO_SOFTWARE="hello,ssh") as platform,
    ):
        directory = Path(scratch)
        key = keygen(directory / "key")
        token = platform.create_user("bench")
        admin = platform.create_user("bench-admin", admin=True)
        with platform.api(admin) as api:
            if not any(s["name"] == "ssh" for s in api.get("/api/software").json()):
                entry = {"name": "ssh", "image": SSH_IMAGE, "interface_protocol": "ssh", "interface_port": 2222}
                api.post("/api/software", json={**entry, "honours_base_port": True, "visibility": "everyone"})
        with platform.api(token) as api:
            api.post("/api/me/keys", json={"public_key": Path(f"{key}.pub").read_text()}).raise_for_status()
            door = api.get("/api/ssh").json()
            task_id = platform.start_task(api, "ssh")
            task = platform.wait_for_task(api, task_id, {"running"}, timeout=120)
        address = next(
            network["IPAddress"]
            for network in json.loads(platform.podman("inspect", f"rosetta-{task_id}"))[0]["NetworkSettings"][
                "Networks"
            ].values()
            if network.get("IPAddress")
        )
        logs = platform.rosetta("task", "logs", task_id, token=token).stdout
        task_key = next(line.split("host key ")[1] for line in logs.splitlines() if "rosetta-sshd: host key" in line)
        with openssh_jump(directory, key) as (jump, jump_known):
            known = directory / "known_hosts"
            algorithm, data = task_key.split()[:2]
            known.write_text(f"{door['known_hosts']}\n{jump_known}\n{task_id} {algorithm} {data}\n")
            config = directory / "ssh_config"
            # The task is known by its id whichever way it is reached (its address, or its id at the door).
            config.write_text(
                f"Host {task_id} {address}\n  HostKeyAlias {task_id}\n"
                f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  BatchMode yes\n"
                f"  UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
            )
            base = ["-F", str(config)]
            paths = {
                "direct": (["ssh", *base, "-p", "2222", f"rosetta@{address}"], ["scp", *base, "-P", "2222"],
                           f"rosetta@{address}"),
                "openssh-jump": (["ssh", *base, "-J", jump, "-p", "2222", f"rosetta@{address}"],
                                 ["scp", *base, "-o", f"ProxyJump={jump}", "-P", "2222"], f"rosetta@{address}"),
                "rosetta-door": (["ssh", *base, "-J", task["ssh"]["proxy_jump"], f"rosetta@{task_id}"],
                                 ["scp", *base, "-o", f"ProxyJump={task['ssh']['proxy_jump']}"],
                                 f"rosetta@{task_id}"),
            }  # fmt: skip
            logins: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.runs):
                for name, (ssh, _, _) in paths.items():
                    logins[name].append(timed([*ssh, "true"]))
            payload = directory / "payload"
            payload.write_bytes(secrets.token_bytes(args.megabytes * 1024 * 1024))
            throughput: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(3):
                for name, (_, scp, destination) in paths.items():
                    seconds = timed([*scp, str(payload), f"{destination}:payload"])
                    throughput[name].append(args.megabytes / seconds)
        with platform.api(token) as api:
            api.post(f"/api/tasks/{task_id}/stop")
    print(f"ssh ... true (ms), {args.runs} runs each, alternating")
    print(f"{'path':<22}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
    for name, values in logins.items():
        print(f"{name:<22}{ms(values)}")
    door_ms = statistics.median(logins["rosetta-door"]) * 1000
    jump_ms = statistics.median(logins["openssh-jump"]) * 1000
    direct_ms = statistics.median(logins["direct"]) * 1000
    print(f"rosetta-door / openssh-jump at the median: {door_ms / jump_ms:.2f}x (target <= 1.2x)")
    print(f"over direct: rosetta-door +{door_ms - direct_ms:.0f} ms, openssh-jump +{jump_ms - direct_ms:.0f} ms")
    print(f"\nscp of {args.megabytes} MiB (MiB/s, best of 3)")
    for name, values in throughput.items():
        print(f"{name:<22}{max(values):>9.1f}")
    ratio = max(throughput["rosetta-door"]) / max(throughput["openssh-jump"])
    print(f"rosetta-door / openssh-jump throughput: {ratio:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    os.umask(0o077)
    main()
