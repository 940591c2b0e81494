"""What TLS in front of the gateway costs: the same gateway reached directly (plain HTTP) and
through Debian's nginx ending TLS with the configuration `rosetta tls-config nginx` prints,
side by side in one run.

  direct   nginx serving a small static file (the task's interface, upstream of the gateway)
  gateway  Rosetta's gateway, plain HTTP/1.1, access cookie checked on every request
  tls      nginx (TLS 1.3, ECDSA P-256 certificate) in front of that same gateway process

wrk (HTTP/1.1 keep-alive; nginx's default of 1,000 requests per connection) at 1 and 32
connections, then new connections one at a time (connect, handshake, one request, close), and
the ratios tls/gateway. It informs; it never gates CI. Usage:

    .venv/bin/python benchmarks/tls.py [--duration 5] [--connections-timed 300]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from gateway_throughput import (
    CONNECTIONS,
    free_port,
    gateway_headers,
    run_wrk,
    start_gateway,
    start_static_upstream,
)
from support import Platform  # noqa: F401  (puts the checkout on sys.path)

from rosetta.gateway.terminator import TerminatorSite, nginx_config
from tests.tls import Nginx, make_certificate


def start_terminator(stack: ExitStack, workdir: Path, gateway_port: int) -> tuple[int, Path]:
    """nginx in front of the gateway; its port and the CA that signed its certificate."""
    port = free_port()
    # The gateway here serves tasks at *.localhost, which no certificate can name: the client
    # checks the certificate for localhost and sends the task's Host.
    certificate = make_certificate(workdir, ["localhost"])
    site = TerminatorSite(
        public_url=f"https://localhost:{port}",
        tasks_domain="localhost",
        gateway=f"127.0.0.1:{gateway_port}",
        certificate=str(certificate.chain),
        key=str(certificate.key),
        listen=(f"127.0.0.1:{port}",),
    )
    nginx = Nginx(nginx_config(site), port)
    stack.callback(nginx.stop)
    return port, certificate.ca


def new_connection_ms(port: int, headers: list[str], count: int, tls: ssl.SSLContext | None) -> list[float]:
    """Each: connect, (handshake), one GET with Connection: close, read to the end; milliseconds."""
    request = "\r\n".join(["GET /index.html HTTP/1.1", *headers, "Connection: close", "", ""]).encode()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        with sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        times.append((time.perf_counter() - began) * 1000)
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"port {port} answered {answer[:200]!r}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections-timed", type=int, default=300, help="new connections timed per target")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="rosetta-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers drop root and must read the static file
        upstream_port = free_port()
        start_static_upstream(stack, workdir, upstream_port)
        gateway_port = free_port()
        start_gateway(stack, gateway_port, upstream_port, 1)
        tls_port, ca = start_terminator(stack, workdir, gateway_port)
        headers = gateway_headers()
        targets = {
            "direct": (upstream_port, [], "http"),
            "gateway": (gateway_port, headers, "http"),
            "tls": (tls_port, headers, "https"),
        }
        results: dict[str, dict[int, dict]] = {}
        for name, (port, target_headers, scheme) in targets.items():
            run_wrk(port, 1, 1, target_headers, scheme)  # warm up connections and caches
            for connections in CONNECTIONS:
                measured = run_wrk(port, connections, args.duration, target_headers, scheme)
                results.setdefault(name, {})[connections] = measured
                print(f"measured {name} c={connections}: {results[name][connections]['rps']:.0f} req/s", flush=True)

        trusting = ssl.create_default_context(cafile=str(ca))
        trusting.set_alpn_protocols(["http/1.1"])
        fresh = {
            "gateway": new_connection_ms(gateway_port, headers, args.connections_timed, None),
            "tls": new_connection_ms(tls_port, headers, args.connections_timed, trusting),
        }
    report(results, fresh)


def report(results: dict[str, dict[int, dict]], fresh: dict[str, list[float]]) -> None:
    print(f"\n{'target':<10}{'conns':>6}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_connections in results.items():
        for connections, result in by_connections.items():
            print(f"{name:<10}{connections:>6}{result['rps']:>11.0f}{result['p50']:>9.3f}{result['p99']:>9.3f}")
    print(f"\n{'new connection':<16}{'p50 ms':>9}{'p90 ms':>9}")
    for name, times in fresh.items():
        print(f"{name:<16}{statistics.median(times):>9.3f}{statistics.quantiles(times, n=10)[-1]:>9.3f}")
    print()
    for connections in CONNECTIONS:
        tls, plain = results["tls"][connections], results["gateway"][connections]
        print(
            f"tls/gateway c={connections}: {tls['rps'] / plain['rps']:.2f}x req/s,"
            f" p50 +{tls['p50'] - plain['p50']:.3f} ms"
        )
    added = statistics.median(fresh["tls"]) - statistics.median(fresh["gateway"])
    print(f"a new connection through tls: +{added:.3f} ms at the median (handshake and nginx's hop)")


if __name__ == "__main__":
    main()
