"""The gateway relay's own CPU time per request, this checkout beside another (--baseline).

gateway_throughput.py measures the whole path (sockets, the kernel, wrk); on a busy machine its
numbers move by tens of percent from one run to the next. This measures only what the relay's
Python does with one keep-alive request — a GET with the access cookie, as wrk sends it in
gateway_throughput.py and as a browser sends it, forwarded to a task, its response's first
bytes relayed back — through the real ClientConnection and UpstreamConnection with in-memory
transports. Each checkout runs in its own process (PYTHONPATH), in alternation, several times;
the fastest run of each is compared. It informs; it never gates CI. Usage:

    .venv/bin/python benchmarks/relay_per_request.py --baseline ../main [--rounds 5] [--head wrk browser]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TASK_ID = "bench"
SECRET = "benchmark-only-secret"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
HEADS = {
    # What wrk sends in gateway_throughput.py.
    "wrk": "GET /index.html HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n",
    # What a browser sends.
    "browser": (
        "GET /index.html HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
        "Accept: text/html,application/xhtml+xml\r\nAccept-Language: en\r\nAccept-Encoding: gzip, deflate\r\n"
        "Connection: keep-alive\r\nCookie: _xsrf=2|abc; {cookie}\r\n\r\n"
    ),
}


class Transport(asyncio.Transport):
    """Takes what is written and forgets it."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.peer = peer

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def write(self, data) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def per_request(requests: int, head: str) -> float:
    """Seconds of the relay's own work per request, in this process's rosetta."""
    from rosetta.gateway import relay
    from rosetta.gateway.access import COOKIE_NAME, access_key
    from rosetta.gateway.proxy import Gateway, GatewayConfig
    from rosetta.gateway.routes import Route, RouteTable

    table = RouteTable(
        routes={
            TASK_ID: Route(
                TASK_ID,
                "Benchmark",
                1,
                "running",
                ("127.0.0.1", 9),
                authorization=b"Authorization: Bearer task-secret\r\n",
            )
        },
        epochs={1: 0},
    )
    config = GatewayConfig(
        listen=[],
        tasks_domain="localhost",
        platform_upstream=("127.0.0.1", 9),
        public_url="http://localhost:8000",
        key=access_key(SECRET),
    )
    gateway = Gateway(config, table)
    cookie = gateway.verifier.make_cookie(1, TASK_ID, epoch=0)
    request = HEADS[head].format(host=f"{TASK_ID}.localhost:8000", cookie=f"{COOKIE_NAME}={cookie}").encode()
    client = relay.ClientConnection(gateway)
    client.connection_made(Transport())
    client.upstream_target = TASK_ID  # connected already: a keep-alive connection's later requests
    client.upstream_transport = Transport()
    upstream = relay.UpstreamConnection(client)
    client.upstream = upstream
    for _ in range(200):  # warm up: caches of the cookie check and the Host
        client.data_received(request)
        upstream.data_received(RESPONSE)
    began = time.perf_counter()
    for _ in range(requests):
        client.data_received(request)
        upstream.data_received(RESPONSE)
    took = time.perf_counter() - began
    assert not client.watching and not client.closed, "the requests were not all forwarded and answered"
    client.watchdog.cancel()
    return took / requests


def measure(checkout: Path, requests: int, head: str) -> float:
    argv = [sys.executable, __file__, "--measure", str(requests), "--head", head]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(checkout)}
    )
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=False, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--head", choices=sorted(HEADS), nargs="+", default=sorted(HEADS), help="request heads to send")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(asyncio.run(per_request(args.measure, args.head[0])))
        return
    checkouts = {"this": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    for head in args.head:
        runs: dict[str, list[float]] = {name: [] for name in checkouts}
        for number in range(args.rounds):
            order = list(checkouts) if number % 2 == 0 else list(reversed(checkouts))
            for name in order:
                runs[name].append(measure(checkouts[name], args.requests, head))
        best = {name: min(times) for name, times in runs.items()}
        print(f"\n{head} head: relay CPU per request, fastest of {args.rounds} runs")
        for name, seconds in best.items():
            print(f"  {name:<9}{seconds * 1e6:8.2f} us   ({checkouts[name]})")
        if "baseline" in best:
            print(f"  ratio this/baseline: {best['this'] / best['baseline']:.3f}", flush=True)


if __name__ == "__main__":
    main()
