"""The gateway under abuse: what one client's load costs another, and what clients leave behind.

  fairness    one client (127.0.0.1) keeps 500 busy keep-alive connections (wrk -c500) while
              another (127.0.0.2) makes one request at a time on a single connection: the
              second one's p50/p99 latency, alone and beside the first (small responses, then
              64 KiB ones).
  close-wait  for 5 s, clients send a request, half of them half-close before reading, all read
              their answer and leave; the upstream keeps its side open after EOF, as servers
              may. Sockets of the gateway's port left in CLOSE-WAIT, 1 s and 5 s later.

It informs; it never gates CI. Usage:

    .venv/bin/python benchmarks/gateway_abuse.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from gateway_throughput import free_port, gateway_headers, start_gateway, start_static_upstream

BIG = 64 * 1024


def request(headers: list[str], path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\n{''.join(header + chr(13) + chr(10) for header in headers)}\r\n".encode()


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the whole response")
        data += chunk
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator:
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return head


def one_client_latency(port: int, headers: list[str], seconds: float) -> tuple[int, float, float]:
    """Requests one at a time from 127.0.0.2 on one connection: (count, p50 ms, p99 ms)."""
    latencies = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        message = request(headers, "/index.html")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            sock.sendall(message)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(0.005)
    latencies.sort()
    return len(latencies), latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def describe(latency: tuple[int, float, float]) -> str:
    return "n=%d p50=%.2f ms p99=%.2f ms" % latency  # noqa: UP031 -- a tuple's fields, in order


def fairness(stack: ExitStack, workdir: Path, seconds: float) -> None:
    upstream = free_port()
    start_static_upstream(stack, workdir, upstream)
    (workdir / "www" / "big.bin").write_bytes(b"x" * BIG)
    port = free_port()
    start_gateway(stack, port, upstream, 1)
    headers = gateway_headers()
    print("fairness: one request at a time from 127.0.0.2, on one connection")
    print(f"  alone:                     {describe(one_client_latency(port, headers, seconds))}")
    for path, label in (("/index.html", "small"), ("/big.bin", "64 KiB")):
        argv = ["wrk", "-t1", "-c500", f"-d{seconds + 3:g}s", *sum((["-H", h] for h in headers), [])]
        hog = subprocess.Popen([*argv, f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        measured = one_client_latency(port, headers, seconds)
        rate = [line.split()[-1] for line in hog.communicate()[0].splitlines() if line.startswith("Requests/sec")]
        print(
            f"  beside 500 busy ({label:>6}):      n=%d p50=%.2f ms p99=%.2f ms" % measured,
            f"(the busy one: {rate[0]} req/s)",
        )


class HalfOpenUpstream(asyncio.Protocol):
    """A keep-alive server that answers at once and keeps its side open after the client's EOF."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def eof_received(self):
        return True


def serve_half_open(port: int) -> None:
    async def serve() -> None:
        await asyncio.get_running_loop().create_server(HalfOpenUpstream, "127.0.0.1", port)
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()


def close_wait(port: int) -> int:
    listing = subprocess.run(
        ["ss", "-tanH", "state", "close-wait", f"( sport = :{port} )"], capture_output=True, text=True
    )
    return len(listing.stdout.splitlines())


def leaving_clients(stack: ExitStack) -> None:
    upstream = free_port()
    serve_half_open(upstream)
    port = free_port()
    start_gateway(stack, port, upstream, 1)
    message = request(gateway_headers(), "/")

    def client(number: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(message)
                if number % 2:
                    sock.shutdown(socket.SHUT_WR)
                read_response(sock)
        except OSError:
            return False
        return True

    clients = failed = 0
    deadline = time.monotonic() + 5
    with ThreadPoolExecutor(20) as pool:
        while time.monotonic() < deadline:
            failed += list(pool.map(client, range(clients, clients + 100))).count(False)
            clients += 100
    after_one = (time.sleep(1), close_wait(port))[1]
    after_five = (time.sleep(4), close_wait(port))[1]
    print(f"close-wait: {clients} clients in 5 s ({failed} failed)")
    print(f"  sockets of the gateway's port in CLOSE-WAIT 1 s later: {after_one}, 5 s later: {after_five}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each latency measurement runs")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="rosetta-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers drop root and must read the static files
        fairness(stack, workdir, args.seconds)
        leaving_clients(stack)


if __name__ == "__main__":
    main()
