"""The built-in environments: ready time through Rosetta against a raw `podman run` of the same
image, image build times and image sizes. Side by side in one run, alternating.

    .venv/bin/python benchmarks/environments.py [--runs 3] [--only jupyterlab desktop ssh]

Ready means usable, the same test on both sides:
  jupyterlab  a kernel started with the REST API executes code sent over its WebSocket
  desktop     noVNC's page loads and its VNC WebSocket receives the server's RFB greeting
  ssh         the server's SSH banner (the task's address; the SSH front door is not measured)
Raw: `podman run -d` with the argv the platform's engine builds for a published port and the
task's secret, then the same polling loop on 127.0.0.1. Rosetta: `POST /api/tasks`, then the
same loop through the gateway with the API token (ssh: the API's phase, then the banner).

Build: each image's cached build (`images/build.sh NAME` when nothing changed; an image in the
store built from other sources is reported "outdated" and left alone). Cold builds
take minutes (a Debian bootstrap, apt and pip downloads) and would replace the images other
users of this machine's store run, so they are not run here; `--cold` rebuilds with
`images/build.sh NAME --force` (podman's layer cache still applies to unchanged steps).
Target: overhead ≤ 150 ms over raw at the median, per environment. Never gates CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import websockets.sync.client
from support import POLL_INTERVAL, own_platform, remove

from rosetta.computing.contract import ContainerSpec
from rosetta.computing.engines.podman import PodmanEngine

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"jupyterlab": 8888, "desktop": 6080, "ssh": 2222}
MEMORY_MB = {"jupyterlab": 1024, "desktop": 1536, "ssh": 256}
TARGET_OVERHEAD_MS = 150
READY_TIMEOUT = 300.0


# -- "usable", the same test for both sides ------------------------------------------------------


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError, websockets.exceptions.WebSocketException, TimeoutError):
            pass
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"{what} never became usable")


def kernel_executes(base: str, authorization: str) -> bool:
    headers = {"Authorization": authorization}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        started = client.post("/api/kernels", json={"name": "python3"})
        if started.status_code != 201:
            return False
        kernel = started.json()["id"]
        try:
            url = f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels"
            with websockets.sync.client.connect(url, additional_headers=headers, open_timeout=10) as channels:
                return run_code(channels, "print(6 * 7)") == "42\n"
        finally:
            client.delete(f"/api/kernels/{kernel}")


def run_code(channels, code: str) -> str:
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "bench", "session": uuid.uuid4().hex,
              "date": datetime.datetime.now(datetime.UTC).isoformat(), "version": "5.3"}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    channels.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                              "channel": "shell", "buffers": []}))  # fmt: skip
    while True:
        message = json.loads(channels.recv(timeout=30))
        if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "stream":
            return message["content"]["text"]


def novnc_connected(base: str, authorization: str) -> bool:
    headers = {"Authorization": authorization}
    page = httpx.get(f"{base}/vnc.html", headers=headers, timeout=10)
    if page.status_code != 200:
        return False
    url = f"{base.replace('http', 'ws', 1)}/websockify"
    with websockets.sync.client.connect(
        url, additional_headers=headers, subprotocols=["binary"], open_timeout=10
    ) as vnc:
        return vnc.recv(timeout=10)[:4] == b"RFB "


def ssh_banner(address: tuple[str, int]) -> bool:
    with socket.create_connection(address, timeout=5) as connection:
        return connection.recv(4) == b"SSH-"


# -- the two sides -------------------------------------------------------------------------------


def raw_ready(platform, name: str, number: int) -> float:
    """`podman run -d` as the platform's engine builds it (published port, the secret in an env
    file), then poll the interface directly until usable."""
    secret = secrets.token_urlsafe(32)
    spec = ContainerSpec(
        task_id=f"bench-{name}-{number}", instance="benchmark", image=f"localhost/rosetta/{name}",
        port=PORTS[name], cpus=1.0, memory_mb=MEMORY_MB[name], base_port=True, secret=secret,
    )  # fmt: skip
    env_file = platform.home / f"{spec.task_id}.env"
    env_file.write_bytes(PodmanEngine.env_file(spec))
    env_file.chmod(0o600)
    started = time.perf_counter()
    container = platform.podman(*PodmanEngine().run_argv(spec, str(env_file))[1:]).strip()
    ports = json.loads(platform.podman("inspect", container))[0]["NetworkSettings"]["Ports"]
    port = int(ports[f"{PORTS[name]}/tcp"][0]["HostPort"])
    base = f"http://127.0.0.1:{port}"
    usable(name, base, f"Bearer {secret}", lambda: ("127.0.0.1", port))
    elapsed = time.perf_counter() - started
    remove(platform, f"rosetta-{spec.task_id}")
    env_file.unlink()
    return elapsed


def platform_ready(platform, api: httpx.Client, token: str, name: str) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    task = (
        api.post("/api/tasks", json={"software": name, "resource": "local", "memory_mb": MEMORY_MB[name]})
        .raise_for_status()
        .json()
    )

    def address() -> tuple[str, int]:
        # SSH: once the API says running, its address on the task's network (the front door is not measured).
        while api.get(f"/api/tasks/{task['id']}").json()["phase"] != "running":
            time.sleep(POLL_INTERVAL)
        networks = json.loads(platform.podman("inspect", f"rosetta-{task['id']}"))[0]["NetworkSettings"]["Networks"]
        return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress")), PORTS[name]

    usable(name, task["interface_url"].rstrip("/"), f"Bearer {token}", address)
    elapsed = time.perf_counter() - started
    events = api.get(f"/api/tasks/{task['id']}/events").json()
    api.delete(f"/api/tasks/{task['id']}")  # outside the timed part
    while api.get(f"/api/tasks/{task['id']}").status_code != 404:
        time.sleep(0.1)
    return elapsed, events


def usable(name: str, base: str, authorization: str, address) -> None:
    if name == "jupyterlab":
        until(lambda: kernel_executes(base, authorization), name)
    elif name == "desktop":
        until(lambda: novnc_connected(base, authorization), name)
    else:
        where = address()
        until(lambda: ssh_banner(where), name)


# -- images --------------------------------------------------------------------------------------


def up_to_date(name: str) -> bool:
    """Whether the image in the store was built from these sources (`images/build.sh --list`):
    measuring a cached build must not rebuild, and replace, an image built from other sources."""
    listing = subprocess.run([str(ROOT / "images" / "build.sh"), "--list"], check=True, capture_output=True, text=True)
    return any(line.split()[:1] == [name] and "up to date" in line for line in listing.stdout.splitlines())


def cached_build_seconds(name: str) -> float | None:
    if not up_to_date(name):
        return None
    started = time.perf_counter()
    subprocess.run([str(ROOT / "images" / "build.sh"), name], check=True, capture_output=True)
    return time.perf_counter() - started


def cold_build_seconds(name: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(ROOT / "images" / "build.sh"), name, "--force"], check=True, capture_output=True)
    return time.perf_counter() - started


def image_size_mb(platform, name: str) -> float:
    return int(platform.podman("image", "inspect", "--format", "{{.Size}}", f"localhost/rosetta/{name}")) / 1e6


def step_durations(events: list[dict], total: float) -> dict[str, float]:
    """request → launch → container up → interface answered (the controller's probe) → usable."""
    times = [datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() for event in events]
    phases = [event["phase"] for event in events]
    launch, up = times[1], times[phases.index("starting")]
    # The gateway forwards once the container's address is known: an interface may be usable
    # before the controller's probe has said "running".
    answered = times[phases.index("running")] if "running" in phases else times[0] + total
    return {
        "request→launch": (launch - times[0]) * 1000,
        "launch→up": (up - launch) * 1000,
        "up→answered": (answered - up) * 1000,
        "answered→usable": max(0.0, total * 1000 - (answered - times[0]) * 1000),
    }


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=list(PORTS), choices=list(PORTS))
    parser.add_argument("--cold", action="store_true", help="also rebuild each image (minutes each)")
    args = parser.parse_args()

    results = {}
    settings = {"ROSETTA_DEMO_SOFTWARE": ",".join(args.only), "ROSETTA_REGISTRY_LISTEN": "off"}
    with own_platform(**settings) as platform:
        token = platform.create_user("bench")
        with platform.api(token) as api:
            for name in args.only:
                raw_ready(platform, name, 0)  # warm-up (page cache, podman), untimed
                platform_ready(platform, api, token, name)
                raw, through, steps = [], [], []
                for number in range(1, args.runs + 1):
                    raw.append(raw_ready(platform, name, number))
                    elapsed, events = platform_ready(platform, api, token, name)
                    through.append(elapsed)
                    steps.append(events)
                    said = f"{name} run {number}: raw {raw[-1] * 1000:.0f} ms, Rosetta {elapsed * 1000:.0f} ms"
                    print(said, flush=True)
                results[name] = {"raw": raw, "through": through, "size": image_size_mb(platform, name), "steps": steps}
        for name in args.only:
            results[name]["cached"] = cached_build_seconds(name)
            if args.cold:
                results[name]["cold"] = cold_build_seconds(name)

    print(f"\nready time, {args.runs} runs each, alternating (median ms)")
    columns = f"{'environment':<12}{'raw':>9}{'Rosetta':>10}{'overhead':>10}{'ratio':>8}"
    print(f"{columns}   target ≤ {TARGET_OVERHEAD_MS} ms")
    for name, result in results.items():
        raw, through = median_ms(result["raw"]), median_ms(result["through"])
        verdict = "met" if through - raw <= TARGET_OVERHEAD_MS else "NOT met"
        print(f"{name:<12}{raw:>9.0f}{through:>10.0f}{through - raw:>10.0f}{through / raw:>8.2f}   {verdict}")
    print("\nwhere Rosetta's time goes (median ms, from the task's own events; then until usable):")
    for name, result in results.items():
        runs = zip(result["steps"], result["through"], strict=True)
        parts = [step_durations(events, total) for events, total in runs]
        medians = {step: statistics.median(part[step] for part in parts) for step in parts[0]}
        print(f"  {name:<12}" + "  ".join(f"{step} {ms:.0f}" for step, ms in medians.items()))
    print(f"\n{'image':<12}{'size MB':>9}{'cached build s':>16}{'cold build s':>14}")
    for name, result in results.items():
        cold = f"{result['cold']:.0f}" if "cold" in result else "not run"
        cached = "outdated" if result["cached"] is None else f"{result['cached']:.2f}"
        print(f"{name:<12}{result['size']:>9.0f}{cached:>16}{cold:>14}")


if __name__ == "__main__":
    main()
