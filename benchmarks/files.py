"""File transfers through the platform, side by side with the plain tools on the same data.

    .venv/bin/python benchmarks/files.py [--size-mib 1024] [--sftp-size-mib 256] [--runs 3]

Local storage (`home`): upload and download of one file through the gateway and the API
(`PUT`/`GET /api/storages/home/content`, streamed both ways) against `cp` of the same file into
and out of the same folder. With the test bed up (testbed/up), the cluster's shared home over
SFTP (`cluster-home`) against `scp` to and from the same login node as the same account.
Prints MB/s (best of the runs) and the ratios; target ≥ 0.8× the plain tool. Also the web
process's resident memory before and at its peak during the upload: it must not grow with the
file's size. Never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
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
    supervisor = platform.processes["run"].pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if ppid == supervisor and b"web" in cmdline:
                return int(entry.name)
    raise RuntimeError("no web process")


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


def upload(client: httpx.Client, storage: str, path: str, source: Path) -> None:
    def read():
        with open(source, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    response = client.put(f"/api/storages/{storage}/content", params={"path": path, "overwrite": "true"},
                          content=read(), headers={"Content-Length": str(source.stat().st_size)})  # fmt: skip
    response.raise_for_status()


def download(client: httpx.Client, storage: str, path: str, target: Path) -> None:
    with client.stream("GET", f"/api/storages/{storage}/content", params={"path": path}) as response:
        response.raise_for_status()
        with open(target, "wb") as out:
            for chunk in response.iter_raw(CHUNK):
                out.write(chunk)


def make_file(path: Path, mib: int) -> None:
    """Real blocks (not a sparse file, which cp would copy as holes)."""
    block = os.urandom(CHUNK)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)


def report(name: str, mib: int, plain: str, plain_s: float, platform_s: float) -> None:
    print(f"  {name:<18} {plain} {mib / plain_s:8.0f} MB/s   platform {mib / platform_s:8.0f} MB/s   "
          f"ratio {plain_s / platform_s:5.2f}×")  # fmt: skip


def local(platform, client, work: Path, mib: int, runs: int) -> None:
    username = client.get("/api/me").json()["username"]
    root = platform.home / "storage" / "home" / username
    client.get("/api/storages/home/entries")  # creates the user's folder
    source = work / "source.bin"
    make_file(source, mib)
    pid = web_pid(platform)
    up_cp, up_platform, down_cp, down_platform, memory = [], [], [], [], []
    for _ in range(runs):
        up_cp.append(timed(lambda: subprocess.run(["cp", str(source), str(root / "cp.bin")], check=True)))
        with PeakMemory(pid) as peak:
            up_platform.append(timed(lambda: upload(client, "home", "up.bin", source)))
        memory.append((peak.before, peak.peak))
        down_cp.append(
            timed(lambda: subprocess.run(["cp", str(root / "cp.bin"), str(work / "back-cp.bin")], check=True))
        )
        down_platform.append(timed(lambda: download(client, "home", "up.bin", work / "back.bin")))
        for leftover in (root / "cp.bin", work / "back-cp.bin", work / "back.bin"):
            leftover.unlink(missing_ok=True)
    print(f"local storage, {mib} MiB, best of {runs}:")
    report("upload", mib, "cp ", min(up_cp), min(up_platform))
    report("download", mib, "cp ", min(down_cp), min(down_platform))
    before, peak = max(memory, key=lambda pair: pair[1] - pair[0])
    print(f"  web process memory during a {mib} MiB upload: {before:.0f} MiB before, peak {peak:.0f} MiB "
          f"(+{peak - before:.0f} MiB)")  # fmt: skip


def sftp(platform, client, work: Path, mib: int, runs: int) -> None:
    described = json.loads((TESTBED / "testbed.json").read_text())
    login = next(h for h in described["hosts"] if h["name"] == "rstb-login")
    username = client.get("/api/me").json()["username"]
    service_home = next(a["home"] for a in described["accounts"] if a["name"] == "rosetta")
    remote_dir = f"{service_home}/users/{username}"
    client.get("/api/storages/cluster-home/entries")  # creates the user's folder there
    source = work / "sftp-source.bin"
    make_file(source, mib)
    scp = ["scp", "-q", "-F", str(TESTBED / "ssh_config")]
    target = f"rosetta@{login['address']}:{remote_dir}"
    up_scp, up_platform, down_scp, down_platform = [], [], [], []
    for _ in range(runs):
        up_scp.append(timed(lambda: subprocess.run([*scp, str(source), f"{target}/scp.bin"], check=True)))
        up_platform.append(timed(lambda: upload(client, "cluster-home", "up.bin", source)))
        down_scp.append(timed(lambda: subprocess.run([*scp, f"{target}/scp.bin", str(work / "b.bin")], check=True)))
        down_platform.append(timed(lambda: download(client, "cluster-home", "up.bin", work / "back.bin")))
    for leftover in ("scp.bin", "up.bin"):
        client.delete("/api/storages/cluster-home/entries", params={"path": leftover})
    print(f"SFTP storage on the test bed cluster, {mib} MiB, best of {runs}:")
    report("upload", mib, "scp", min(up_scp), min(up_platform))
    report("download", mib, "scp", min(down_scp), min(down_platform))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--sftp-size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    testbed = (TESTBED / "testbed.json").exists()
    settings = {"ROSETTA_TESTBED_DIR": str(TESTBED)} if testbed else {}
    with own_platform(**settings) as platform, tempfile.TemporaryDirectory(prefix="rosetta-bench-files-") as work:
        client = httpx.Client(base_url=platform.url, timeout=httpx.Timeout(60, read=600, write=600),
                              headers={"Authorization": f"Bearer {platform.create_user('bench-files')}"})  # fmt: skip
        local(platform, client, Path(work), args.size_mib, args.runs)
        if testbed:
            sftp(platform, client, Path(work), args.sftp_size_mib, args.runs)
        else:
            print("SFTP: the test bed is not up (testbed/up); skipped.")


if __name__ == "__main__":
    main()
