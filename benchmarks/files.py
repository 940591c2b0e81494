"""File transfers through the platform, side by side with the plain tools on the same data.

    .venv/bin/python benchmarks/files.py [--size-mib 1024] [--sftp-size-mib 256] [--runs 3]

Local storage (`home`): upload and download of one file through the gateway and the API
(`PUT`/`GET /api/storages/home/content`, streamed both ways) against `cp` of the same file into
and out of the same folder. With the test bed up (testbed/up), the cluster's shared home over
SFTP (`cluster-home`) against `scp` to and from the same login node as the same account, and
the time of small operations there beside the same on `home`.
The platform's client is `curl` (a plain tool, like `cp` and `scp`, so that the client is not
what is measured); `rosetta files put/get` (the platform's own Python client) is shown beside.
Prints MB/s (best of the runs) and the ratios; target ≥ 0.8× the plain tool; and the CPU
seconds the web process and the gateway spent per GiB (least of the runs: steadier than
throughput on a shared machine). Also the web process's resident memory before and at its
peak during the upload: it must not grow with the file's size. Never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from support import own_platform

TESTBED = Path("/var/lib/rosetta-testbed")
CHUNK = 1024 * 1024


def web_pid(platform) -> int:
    return child_pid(platform, b"web")


def child_pid(platform, name: bytes) -> int:
    supervisor = platform.processes["run"].pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if ppid == supervisor and name in cmdline:
                return int(entry.name)
    raise RuntimeError(f"no {name.decode()} process")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    def __init__(self, pid: int) -> None:
        self.pid, self.before = pid, rss_mib(pid)
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


class Platform:
    """The platform's side: curl (or `rosetta files`) through the gateway, with the CPU time
    its web process and gateway spent on each transfer."""

    def __init__(self, platform, client: httpx.Client, token: str, work: Path) -> None:
        self.url, self.platform, self.token = platform.url, platform, token
        self.username = ""
        self.web, self.gateway = web_pid(platform), child_pid(platform, b"gateway")
        self.headers = work / "headers"  # the token in a file of ours, not on a command line
        self.headers.write_text(f"Authorization: Bearer {token}\n")
        self.headers.chmod(0o600)
        self.cpu: dict[str, list[tuple[float, float]]] = {}

    def _curl(self, *args: str) -> None:
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", "-H", f"@{self.headers}", *args], check=True)

    def _measured(self, label: str, action) -> float:
        web, gateway = cpu_seconds(self.web), cpu_seconds(self.gateway)
        seconds = timed(action)
        self.cpu.setdefault(label, []).append((cpu_seconds(self.web) - web, cpu_seconds(self.gateway) - gateway))
        return seconds

    def upload(self, storage: str, path: str, source: Path) -> float:
        url = f"{self.url}/api/storages/{storage}/content?path={path}&overwrite=true"
        return self._measured(f"{storage} upload", lambda: self._curl("-T", str(source), url))

    def download(self, storage: str, path: str, target: Path) -> float:
        url = f"{self.url}/api/storages/{storage}/content?path={path}"
        return self._measured(f"{storage} download", lambda: self._curl("-o", str(target), url))

    def cli(self, *args: str) -> float:
        return timed(lambda: self.platform.rosetta("files", *args, "--no-progress", token=self.token))

    def print_cpu(self, storage: str, mib: int) -> None:
        for way in ("upload", "download"):
            spent = self.cpu.pop(f"{storage} {way}")
            web, gateway = min(pair[0] for pair in spent), min(pair[1] for pair in spent)
            print(
                f"  {way:<18} CPU per GiB: web process {web * 1024 / mib:5.2f} s, gateway {gateway * 1024 / mib:5.2f} s"
            )


def make_file(path: Path, mib: int) -> None:
    """Real blocks (not a sparse file, which cp would copy as holes)."""
    block = os.urandom(CHUNK)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)


class Nginx:
    """What HTTP on loopback allows at best here: nginx (C, one worker, sendfile) taking a PUT
    into a folder (WebDAV: a temporary file renamed into place, as the platform does) and
    serving the file back, with the same curl. Only shown, never part of a ratio to the tools."""

    def __init__(self, source: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rosetta-bench-nginx-"))
        self.folder.chmod(0o755)  # nginx's workers drop root
        (self.folder / "put").mkdir(mode=0o777)
        (self.folder / "put").chmod(0o777)
        os.link(source, self.folder / "source.bin")  # same file system: no copy
        source.chmod(0o644)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = self.folder / "nginx.conf"
        config.write_text(f"""
worker_processes 1;
daemon off;
pid {self.folder}/nginx.pid;
error_log {self.folder}/error.log warn;
events {{ }}
http {{
    access_log off;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {self.folder}/put;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.folder};
        location /put/ {{ dav_methods PUT; }}
    }}
}}
""")
        self.process = subprocess.Popen(["/usr/sbin/nginx", "-c", str(config), "-p", str(self.folder)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def upload(self) -> float:
        target = self.folder / "put" / "up.bin"
        url = f"http://127.0.0.1:{self.port}/put/up.bin"
        source = str(self.folder / "source.bin")
        seconds = timed(lambda: subprocess.run(["curl", "-sSf", "-o", "/dev/null", "-T", source, url], check=True))
        target.unlink()
        return seconds

    def download(self, target: Path) -> float:
        url = f"http://127.0.0.1:{self.port}/source.bin"
        seconds = timed(lambda: subprocess.run(["curl", "-sSf", "-o", str(target), url], check=True))
        target.unlink()
        return seconds

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def report(name: str, mib: int, plain: str, plain_s: float, platform_s: float, ours: str = "platform") -> None:
    print(f"  {name:<18} {plain} {mib / plain_s:8.0f} MB/s   {ours:<8} {mib / platform_s:8.0f} MB/s   "
          f"ratio {plain_s / platform_s:5.2f}×")  # fmt: skip


def local(platform, ours: Platform, work: Path, mib: int, runs: int) -> None:
    username = ours.username
    root = platform.home / "storage" / "home" / username
    source = work / "source.bin"
    make_file(source, mib)
    up_cp, up_platform, down_cp, down_platform, up_cli, down_cli, memory = [], [], [], [], [], [], []
    nginx = Nginx(source) if Path("/usr/sbin/nginx").exists() and os.geteuid() == 0 else None
    up_nginx, down_nginx = [], []
    for _ in range(runs):
        if nginx is not None:
            up_nginx.append(nginx.upload())
            down_nginx.append(nginx.download(work / "back-nginx.bin"))
        up_cp.append(timed(lambda: subprocess.run(["cp", str(source), str(root / "cp.bin")], check=True)))
        with PeakMemory(ours.web) as peak:
            up_platform.append(ours.upload("home", "up.bin", source))
        memory.append((peak.before, peak.peak))
        down_cp.append(
            timed(lambda: subprocess.run(["cp", str(root / "cp.bin"), str(work / "back-cp.bin")], check=True))
        )
        down_platform.append(ours.download("home", "up.bin", work / "back.bin"))
        up_cli.append(ours.cli("put", str(source), "home:cli.bin"))
        down_cli.append(ours.cli("get", "home:cli.bin", str(work / "back-cli.bin")))
        # Every run writes new files on both sides (replacing one would time its deletion too).
        for leftover in (
            root / "cp.bin",
            root / "up.bin",
            root / "cli.bin",
            work / "back-cp.bin",
            work / "back.bin",
            work / "back-cli.bin",
        ):
            leftover.unlink(missing_ok=True)
    print(f"local storage, {mib} MiB, best of {runs}:")
    report("upload", mib, "cp ", min(up_cp), min(up_platform))
    report("download", mib, "cp ", min(down_cp), min(down_platform))
    report("upload (CLI)", mib, "cp ", min(up_cp), min(up_cli))
    report("download (CLI)", mib, "cp ", min(down_cp), min(down_cli))
    if nginx is not None:
        nginx.close()
        print("  what HTTP on loopback allows here (nginx, 1 worker, sendfile, same curl):")
        report("upload", mib, "cp ", min(up_cp), min(up_nginx), "nginx")
        report("download", mib, "cp ", min(down_cp), min(down_nginx), "nginx")
        print(f"  platform / nginx: upload {min(up_nginx) / min(up_platform):4.2f}×, "
              f"download {min(down_nginx) / min(down_platform):4.2f}×")  # fmt: skip
    ours.print_cpu("home", mib)
    before, peak = max(memory, key=lambda pair: pair[1] - pair[0])
    print(f"  web process memory during a {mib} MiB upload: {before:.0f} MiB before, peak {peak:.0f} MiB "
          f"(+{peak - before:.0f} MiB)")  # fmt: skip


def sftp(platform, ours: Platform, client: httpx.Client, work: Path, mib: int, runs: int) -> None:
    described = json.loads((TESTBED / "testbed.json").read_text())
    login = next(h for h in described["hosts"] if h["name"] == "rstb-login")
    service_home = next(a["home"] for a in described["accounts"] if a["name"] == "rosetta")
    remote_dir = f"{service_home}/users/{ours.username}"
    client.get("/api/storages/cluster-home/entries")  # creates the user's folder there
    source = work / "sftp-source.bin"
    make_file(source, mib)
    scp = ["scp", "-q", "-F", str(TESTBED / "ssh_config")]
    target = f"rosetta@{login['address']}:{remote_dir}"
    up_scp, up_platform, down_scp, down_platform, up_cli, down_cli = [], [], [], [], [], []
    for _ in range(runs):
        up_scp.append(timed(lambda: subprocess.run([*scp, str(source), f"{target}/scp.bin"], check=True)))
        up_platform.append(ours.upload("cluster-home", "up.bin", source))
        down_scp.append(timed(lambda: subprocess.run([*scp, f"{target}/scp.bin", str(work / "b.bin")], check=True)))
        down_platform.append(ours.download("cluster-home", "up.bin", work / "back.bin"))
        up_cli.append(ours.cli("put", str(source), "cluster-home:cli.bin"))
        down_cli.append(ours.cli("get", "cluster-home:cli.bin", str(work / "back-cli.bin")))
    for leftover in ("scp.bin", "up.bin", "cli.bin"):
        client.delete("/api/storages/cluster-home/entries", params={"path": leftover})
    print(f"SFTP storage on the test bed cluster, {mib} MiB, best of {runs}:")
    report("upload", mib, "scp", min(up_scp), min(up_platform))
    report("download", mib, "scp", min(down_scp), min(down_platform))
    report("upload (CLI)", mib, "scp", min(up_scp), min(up_cli))
    report("download (CLI)", mib, "scp", min(down_scp), min(down_cli))
    ours.print_cpu("cluster-home", mib)


def small_operations(client: httpx.Client, count: int = 100) -> None:
    """Median time of a listing, a stat, a small read and a small write through the API, on the
    cluster's shared home (served by the platform's helper over SSH) beside the same on `home`."""
    print(f"small operations, median of {count} (cluster-home / home):")
    kib = b"x" * 1024
    for storage in ("home", "cluster-home"):
        client.put(f"/api/storages/{storage}/content", params={"path": "small.txt", "overwrite": "true"}, content=kib)
    for label, method, route, extra in (
        ("list", "GET", "entries", {}),
        ("stat", "GET", "stat", {"params": {"path": "small.txt"}}),
        ("read 1 KiB", "GET", "content", {"params": {"path": "small.txt"}}),
        ("write 1 KiB", "PUT", "content", {"params": {"path": "small.txt", "overwrite": "true"}, "content": kib}),
    ):
        medians = []
        for storage in ("cluster-home", "home"):
            times = []
            for _ in range(count):
                started = time.perf_counter()
                client.request(method, f"/api/storages/{storage}/{route}", **extra).raise_for_status()
                times.append(time.perf_counter() - started)
            medians.append(sorted(times)[count // 2] * 1000)
        print(f"  {label:<12} {medians[0]:6.1f} ms / {medians[1]:6.1f} ms   ratio {medians[0] / medians[1]:5.2f}×")
    for storage in ("home", "cluster-home"):
        client.delete(f"/api/storages/{storage}/entries", params={"path": "small.txt"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--sftp-size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    testbed = (TESTBED / "testbed.json").exists()
    settings = {"ROSETTA_TESTBED_DIR": str(TESTBED)} if testbed else {}
    with own_platform(**settings) as platform, tempfile.TemporaryDirectory(prefix="rosetta-bench-files-") as work:
        token = platform.create_user("bench-files")
        client = httpx.Client(base_url=platform.url, timeout=60, headers={"Authorization": f"Bearer {token}"})
        client.get("/api/storages/home/entries")  # creates the user's folder
        ours = Platform(platform, client, token, Path(work))
        ours.username = client.get("/api/me").json()["username"]
        local(platform, ours, Path(work), args.size_mib, args.runs)
        if testbed:
            sftp(platform, ours, client, Path(work), args.sftp_size_mib, args.runs)
            small_operations(client)
        else:
            print("SFTP: the test bed is not up (testbed/up); skipped.")


if __name__ == "__main__":
    main()
