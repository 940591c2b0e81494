"""Remote resources on the test bed, side by side with doing the same by hand in one run.

    testbed/up && .venv/bin/python benchmarks/remote.py [--runs 5] [--duration 3] [--rounds 3]

Ready time — request to the first 200 through the gateway — on `testbed-host` (SSH + rootless
podman) against raw `ssh host podman run` of the same image by digest plus polling through an
`ssh -L` forward; and on `testbed-slurm` against raw `sbatch` of the same job script plus
polling. Target: the platform's overhead ≤ 300 ms at the median.

Tunnel — requests per second and p50 latency (wrk, 1 and 8 connections) to one task's
interface through the gateway (which forwards over the resource's SSH connection) against
`ssh -L` to the same interface, in alternating rounds (the median of each side, and of the
rounds' ratios: what else runs on the machine weighs on both sides alike). Target: ≥ 0.8× ssh
-L's requests per second. Never gates CI.

Both sides are one OpenSSH master each with a forward of its own, to the same task, each request
on a new connection (hello's busybox httpd closes after each response): the raw master has run
commands (`podman port`), which is what made its sshd turn Nagle's algorithm off, and Rosetta's
master runs one session for the same reason (rosetta/computing/transports/openssh.py).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from support import own_platform, until_ok

TESTBED = Path("/var/lib/rosetta-testbed")
# The raw side keeps one multiplexed OpenSSH connection per host, as Rosetta keeps its own: neither
# pays for a new connection per command.
SSH = ["ssh", "-F", str(TESTBED / "ssh_config"), "-o", "ControlMaster=auto", "-o", "ControlPersist=300",
       "-o", "ControlPath=/tmp/rosetta-bench-%C"]  # fmt: skip


def ssh(host: str, *argv: str) -> str:
    """argv run on ``host``, quoted once: the remote shell joins ssh's arguments with spaces."""
    return subprocess.run(
        [*SSH, f"rosetta@{host}", shlex.join(argv)], capture_output=True, text=True, check=True
    ).stdout


def forward(host: str, target: str, port: int) -> subprocess.Popen:
    """`ssh -L` from a free local port to target:port as ``host`` sees it; the local port."""
    local = _free_port()
    argv = [*SSH, "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:{target}:{port}", f"rosetta@{host}"]
    process = subprocess.Popen(argv)
    process.local_port = local
    return process


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_ready(platform, api, token: str, resource: str) -> tuple[float, str]:
    began = time.perf_counter()
    batch = {"time_limit_minutes": 10} if resource == "testbed-slurm" else {}  # others take no time limit
    task = api.post("/api/tasks", json={"software": "hello", "resource": resource, **batch}).json()
    with httpx.Client(timeout=10) as client:
        until_ok(client, task["interface_url"], {"Authorization": f"Bearer {token}"})
    return time.perf_counter() - began, task["id"]


def stop(platform, api, task_id: str) -> None:
    api.delete(f"/api/tasks/{task_id}")
    while api.get(f"/api/tasks/{task_id}").status_code != 404:
        time.sleep(0.1)


def raw_ssh_ready(image: str) -> float:
    began = time.perf_counter()
    name = f"bench-{time.monotonic_ns()}"
    ssh("rstb-host", "podman", "run", "-d", "--init", "--name", name, "--tls-verify=false", "-e", "BASE_PORT=8080",
        "-p", "127.0.0.1::8080", image)  # fmt: skip
    mapping = ssh("rstb-host", "podman", "port", name, "8080").strip()
    port = int(mapping.rsplit(":", 1)[1])
    tunnel = forward("rstb-host", "127.0.0.1", port)
    try:
        with httpx.Client(timeout=10) as client:
            until_ok(client, f"http://127.0.0.1:{tunnel.local_port}/")
        elapsed = time.perf_counter() - began
    finally:
        tunnel.terminate()
        ssh("rstb-host", "podman", "rm", "-f", "-t", "0", name)
    return elapsed


def raw_slurm_ready(image: str) -> float:
    """sbatch of a job that runs the image by digest on a free port and writes where."""
    directory = f"{TESTBED}/shared/home/rosetta/bench-{time.monotonic_ns()}"
    script = f"""#!/bin/bash
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
echo "$(hostname -I | awk '{{print $1}}') $port" > {directory}/where
exec podman run --rm --init --network host --tls-verify=false -e BASE_PORT=$port {image}
"""
    ssh("rstb-login", "mkdir", "-p", directory)
    subprocess.run([*SSH, "rosetta@rstb-login", f"cat > {directory}/job.sh"], input=script, text=True, check=True)
    began = time.perf_counter()
    job = ssh("rstb-login", "sbatch", "--parsable", "--time=10", f"--output={directory}/out",
              f"{directory}/job.sh").strip()  # fmt: skip
    where = Path(directory) / "where"
    while not where.exists() or not where.read_text().strip():
        time.sleep(0.01)
    host, port = where.read_text().split()
    tunnel = forward("rstb-login", host, int(port))
    try:
        with httpx.Client(timeout=10) as client:
            until_ok(client, f"http://127.0.0.1:{tunnel.local_port}/")
        elapsed = time.perf_counter() - began
    finally:
        tunnel.terminate()
        ssh("rstb-login", "scancel", job)
        ssh("rstb-login", "rm", "-rf", directory)
    return elapsed


def wrk(url: str, connections: int, duration: int, headers: dict | None = None) -> tuple[float, float]:
    """Requests per second and p50 latency (ms)."""
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rps, float(p50.group(1)) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating tunnel rounds per connection count")
    args = parser.parse_args()
    bridge = json.loads((TESTBED / "testbed.json").read_text())["bridge"]["address"]
    registry = f"{bridge}:{_free_port()}"
    with own_platform(ROSETTA_TESTBED_DIR=str(TESTBED), ROSETTA_REGISTRY_LISTEN=registry) as platform:
        token = platform.create_user("bench", admin=True)
        with platform.api(token) as api:
            image = next(s for s in api.get("/api/software").json() if s["name"] == "hello")
            reference = f"{registry}/rosetta/hello@{image['registry_digest']}"
            print(f"ready time, {args.runs} runs each, alternating (ms; median)")
            for resource, raw in (("testbed-host", raw_ssh_ready), ("testbed-slurm", raw_slurm_ready)):
                raw_times, ours = [], []
                platform_ready(platform, api, token, resource)  # warm-up: the image is pulled once
                for _ in range(args.runs):
                    raw_times.append(raw(reference))
                    elapsed, task_id = platform_ready(platform, api, token, resource)
                    ours.append(elapsed)
                    stop(platform, api, task_id)
                overhead = (statistics.median(ours) - statistics.median(raw_times)) * 1000
                print(f"  {resource:<15} raw {statistics.median(raw_times) * 1000:7.0f}   Rosetta "
                      f"{statistics.median(ours) * 1000:7.0f}   overhead {overhead:+6.0f} ms "
                      f"(target ≤ 300: {'met' if overhead <= 300 else 'NOT met'})")  # fmt: skip

            elapsed, task_id = platform_ready(platform, api, token, "testbed-host")
            port = int(ssh("rstb-host", "podman", "port", f"rosetta-{task_id}", "8080").strip().rsplit(":", 1)[1])
            # hello answers only with the task's secret, which the gateway sends: ssh -L sends it too.
            # The test bed's busybox image has no printenv: its shell reads the variable.
            read_secret = ["sh", "-c", 'echo "$ROSETTA_TASK_SECRET"']
            secret = ssh("rstb-host", "podman", "exec", f"rosetta-{task_id}", *read_secret)
            as_gateway = {"Authorization": f"Bearer {secret.strip()}"}
            tunnel = forward("rstb-host", "127.0.0.1", port)
            try:
                with httpx.Client(timeout=10) as client:
                    until_ok(client, f"http://127.0.0.1:{tunnel.local_port}/", as_gateway)
                url = api.get(f"/api/tasks/{task_id}").json()["interface_url"]
                print(f"tunnel to one remote task, wrk, {args.rounds} alternating rounds of {args.duration} s "
                      "(req/s, p50 ms; medians)")  # fmt: skip
                for connections in (1, 8):
                    rounds = [
                        (wrk(f"http://127.0.0.1:{tunnel.local_port}/", connections, args.duration, as_gateway),
                         wrk(url, connections, args.duration, {"Authorization": f"Bearer {token}"}))
                        for _ in range(args.rounds)
                    ]  # fmt: skip
                    raw_runs, our_runs = zip(*rounds, strict=True)
                    direct = [statistics.median(run[k] for run in raw_runs) for k in (0, 1)]
                    ours = [statistics.median(run[k] for run in our_runs) for k in (0, 1)]
                    ratios = [our[0] / raw[0] for raw, our in rounds]  # each round's pair ran back to back
                    ratio, each = statistics.median(ratios), " ".join(f"{r:.2f}" for r in ratios)
                    print(
                        f"  c={connections}: ssh -L {direct[0]:8.0f} / {direct[1]:.2f}   gateway {ours[0]:8.0f} / "
                        f"{ours[1]:.2f}   ratio {ratio:.2f} [{each}] "
                        f"(target ≥ 0.8: {'met' if ratio >= 0.8 else 'NOT met'})"
                    )
            finally:
                tunnel.terminate()
                stop(platform, api, task_id)


if __name__ == "__main__":
    main()
