"""How soon a queue worker (the builder, the registry's pusher: rosetta.core.worker) starts a pass
after a wake-up, side by side: a datagram on this machine (SQLite, one machine) and a NOTIFY
through PostgreSQL (several machines; before, the workers did not listen to it and waited for
their next poll, every POLL seconds: on average POLL/2).

    .venv/bin/python benchmarks/worker_wakeups.py [--runs 30]

Per run: signal, then time until ``Wakeups.wait`` returns (the worker's own BURST pause, which
lets a burst of signals be served by one pass, included). A private PostgreSQL server of its own
(testbed/postgres.sh) on loopback. Prints medians and ratios; never gates CI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from rosetta.core.notify import channel, wake_local
from rosetta.core.worker import Wakeups

POSTGRES = Path(__file__).resolve().parents[1] / "testbed" / "postgres.sh"
POLL = 10.0  # the builder's and the pusher's (rosetta.builds.worker, rosetta.registry.worker)


@contextlib.contextmanager
def postgres():
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        url = subprocess.run([str(POSTGRES), directory, str(port)], capture_output=True, text=True, check=True)
        yield url.stdout.strip()
    finally:
        subprocess.run([str(POSTGRES), "--stop", directory], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def latencies(wakeups: Wakeups, signal, runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        signal()
        wakeups.wait(POLL)
        took.append(time.perf_counter() - started)
    return took


def measure(url: str, runs: int) -> tuple[list[float], list[float]]:
    with Wakeups("bench-datagram") as local:
        datagram = latencies(local, lambda: wake_local("bench-datagram"), runs)
    with (
        psycopg.connect(url, autocommit=True) as sender,
        Wakeups("bench-notify", lambda: psycopg.connect(url, autocommit=True)) as shared,
    ):
        notify = latencies(shared, lambda: sender.execute("SELECT pg_notify(%s, '*')", [channel("bench-notify")]), runs)
    return datagram, notify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="rosetta-bench-") as home, postgres() as url:
        os.environ["ROSETTA_HOME"] = home  # the workers' sockets
        datagram, notify = measure(url, runs)
    d, n = statistics.median(datagram), statistics.median(notify)
    print(f"runs: {runs}")
    print(f"datagram (one machine):   median {d * 1000:7.1f} ms")
    print(f"NOTIFY (PostgreSQL):      median {n * 1000:7.1f} ms   ratio NOTIFY/datagram {n / d:.2f}")
    before = POLL / 2
    print(f"poll only (before, PostgreSQL): {before * 1000:5.0f} ms on average   ratio poll/NOTIFY {before / n:.0f}")


if __name__ == "__main__":
    main()
