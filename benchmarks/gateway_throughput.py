"""Gateway throughput and added latency, side by side with nginx and configurable-http-proxy.

Runs wrk (1 and 32 connections) against:
  direct       nginx serving a small static file (the upstream of every proxy below)
  gateway      Rosetta's gateway, access cookie checked on every request
  nginx-proxy  nginx as a plain reverse proxy with upstream keep-alive
  chp          configurable-http-proxy (JupyterHub's proxy), installed with npm on first use

and prints req/s, p50, p99 and the ratios the gateway is judged by. With --baseline DIR it also
runs the gateway of another checkout (the main branch, say) in the same run, and measures the
two in alternation over several rounds, so that whatever else the machine does weighs on both
alike: the median ratio this/baseline per target is what a change is judged by. It informs; it
never gates CI. Usage:

    .venv/bin/python benchmarks/gateway_throughput.py [--duration 5] [--workers 1 2] [--baseline ../main]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

CHP_VERSION = "5.3.0"
CHP_DIR = Path.home() / ".cache" / "rosetta-bench" / "chp"
TASK_ID = "bench"
BENCH_USER = 1
BENCH_SECRET = "benchmark-only-secret"
CONNECTIONS = (1, 32)
STATIC_BODY = b"<!doctype html><p>hello from the upstream</p>\n" * 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def start(stack: ExitStack, argv: list[str], port: int, **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    stack.callback(stop, process)
    wait_for_port(port, process)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the servers ----------------------------------------------------------------------


def nginx_config(workdir: Path, name: str, port: int, location: str, upstream: str) -> Path:
    temp = workdir / f"{name}-temp"
    temp.mkdir()
    config = workdir / f"{name}.conf"
    config.write_text(f"""
worker_processes 1;
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    {upstream}
    server {{
        listen 127.0.0.1:{port};
        {location}
    }}
}}
""")
    return config


def start_nginx(stack: ExitStack, workdir: Path, name: str, port: int, location: str, upstream_port: int = 0) -> None:
    upstream = f"upstream static {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}" if upstream_port else ""
    config = nginx_config(workdir, name, port, location, upstream)
    start(stack, ["/usr/sbin/nginx", "-c", str(config), "-p", str(workdir)], port)


def start_static_upstream(stack: ExitStack, workdir: Path, port: int) -> None:
    root = workdir / "www"
    root.mkdir()
    (root / "index.html").write_bytes(STATIC_BODY)
    start_nginx(stack, workdir, "static", port, f"location / {{ root {root}; }}")


def start_nginx_proxy(stack: ExitStack, workdir: Path, port: int, upstream_port: int) -> None:
    location = """location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }"""
    start_nginx(stack, workdir, "proxy", port, location, upstream_port)


def install_chp() -> Path | None:
    binary = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return binary
    if shutil.which("npm") is None or shutil.which("node") is None:
        print("configurable-http-proxy: skipped, npm/node are not installed")
        return None
    CHP_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(CHP_DIR),
            "--no-audit",
            "--no-fund",
            f"configurable-http-proxy@{CHP_VERSION}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not binary.exists():
        print(f"configurable-http-proxy: skipped, npm install failed:\n{result.stderr[-2000:]}")
        return None
    return binary


def start_chp(stack: ExitStack, binary: Path, port: int, upstream_port: int) -> None:
    argv = [
        str(binary),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        str(free_port()),
        "--default-target",
        f"http://127.0.0.1:{upstream_port}",
        "--log-level",
        "error",
    ]
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": "benchmark-only"}
    start(stack, argv, port, env=env)


HERE = Path(__file__).resolve().parents[1]  # this checkout


def start_gateway(stack: ExitStack, port: int, upstream_port: int, workers: int, checkout: Path = HERE) -> int:
    """The gateway of ``checkout``'s rosetta package (not whichever the environment installed); its pid."""
    argv = [sys.executable, __file__, "--serve-gateway", str(port), str(upstream_port), str(workers)]
    return start(stack, argv, port, env={**os.environ, "PYTHONPATH": str(checkout)}).pid


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a gateway process and its workers so far."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def serve_gateway(port: int, upstream_port: int, workers: int) -> None:
    """Entry of the gateway's own process: a static route table, no database."""
    from rosetta.gateway.access import access_key
    from rosetta.gateway.proxy import GatewayConfig, run_gateway
    from rosetta.gateway.routes import Route, RouteTable

    table = RouteTable(
        routes={
            TASK_ID: Route(
                TASK_ID,
                "Benchmark",
                BENCH_USER,
                "running",
                ("127.0.0.1", upstream_port),
                authorization=b"Authorization: Bearer benchmark-task-secret\r\n",  # sent as to every task
            )
        },
        epochs={BENCH_USER: 0},
    )
    config = GatewayConfig(
        listen=[("127.0.0.1", port)],
        tasks_domain="localhost",
        platform_upstream=("127.0.0.1", upstream_port),
        public_url=f"http://localhost:{port}",
        key=access_key(BENCH_SECRET),
        workers=workers,
        reload_interval=3600,
    )
    run_gateway(config, lambda: table, listener=None)


def gateway_headers() -> list[str]:
    from rosetta.gateway.access import COOKIE_NAME, AccessVerifier, access_key

    cookie = AccessVerifier(access_key(BENCH_SECRET)).make_cookie(BENCH_USER, TASK_ID, epoch=0)
    return [f"Host: {TASK_ID}.localhost", f"Cookie: {COOKIE_NAME}={cookie}"]


# -- measuring ------------------------------------------------------------------------


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(port: int, connections: int, duration: float, headers: list[str], scheme: str = "http") -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"{scheme}://127.0.0.1:{port}/index.html")
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses on port {port}:\n{output}")
    socket_errors = re.search(r"Socket errors: .*", output)
    if socket_errors:
        print(f"  note: port {port}, {connections} connections: {socket_errors.group(0)}")
    try:
        return {
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
            "p99": to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        }
    except (AttributeError, ValueError) as error:
        raise RuntimeError(f"unexpected wrk output for port {port}:\n{output}") from error


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def report(results: dict[str, dict[int, dict]], gateway_names: list[str]) -> None:
    print(f"\n{'target':<14}{'conns':>6}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_connections in results.items():
        for connections, result in by_connections.items():
            print(f"{name:<14}{connections:>6}{result['rps']:>11.0f}{result['p50']:>9.3f}{result['p99']:>9.3f}")

    def rps(name: str, connections: int) -> float | None:
        return results.get(name, {}).get(connections, {}).get("rps")

    print("\ntargets: gateway >= 0.5x nginx-proxy req/s, >= 3x chp req/s, <= 0.3 ms added p50 at 1 connection")
    for gateway in gateway_names:
        for connections in CONNECTIONS:
            versus_nginx = ratio(rps(gateway, connections), rps("nginx-proxy", connections))
            print(
                f"{gateway} c={connections}: {versus_nginx} nginx-proxy,"
                f" {ratio(rps(gateway, connections), rps('chp', connections))} chp"
            )
        added = results[gateway][1]["p50"] - results["direct"][1]["p50"]
        print(f"{gateway} added p50 at 1 connection: {added:.3f} ms")


def compare(
    targets: dict[str, tuple[int, list[str]]],
    pids: dict[str, int],
    pairs: list[tuple[str, str]],
    rounds: int,
    duration: float,
) -> None:
    """Each pair (this gateway, the baseline's) measured in turn, the order swapped every round:
    the median req/s of each, and the gateway processes' CPU time per request (which what else
    the machine does disturbs less than req/s), with their ratios."""
    rps: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    for number in range(rounds):
        for pair in pairs:
            for connections in CONNECTIONS:
                for name in pair if number % 2 == 0 else reversed(pair):
                    port, headers = targets[name]
                    before = cpu_seconds(pids[name])
                    measured = run_wrk(port, connections, duration, headers)
                    used = cpu_seconds(pids[name]) - before
                    rps.setdefault((name, connections), []).append(measured["rps"])
                    cpu.setdefault((name, connections), []).append(used / (measured["rps"] * duration) * 1e6)
        print(f"compared round {number + 1}/{rounds}", flush=True)
    print(f"\nthis checkout against --baseline, median of {rounds} alternating rounds of {duration:g} s")
    columns = ("conns", 6), ("req/s", 9), ("baseline", 10), ("ratio", 7), ("CPU us/req", 12), ("baseline", 10)
    print("target".ljust(14) + "".join(name.rjust(width) for name, width in columns) + "ratio".rjust(7))
    for this, baseline in pairs:
        for connections in CONNECTIONS:
            mine, theirs = (statistics.median(rps[(name, connections)]) for name in (this, baseline))
            my_cpu, their_cpu = (statistics.median(cpu[(name, connections)]) for name in (this, baseline))
            print(
                f"{this:<14}{connections:>6}{mine:>9.0f}{theirs:>10.0f}{mine / theirs:>7.3f}"
                f"{my_cpu:>12.1f}{their_cpu:>10.1f}{my_cpu / their_cpu:>7.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="gateway process counts to measure")
    parser.add_argument("--baseline", type=Path, help="another checkout whose gateway to measure alongside")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds against --baseline")
    parser.add_argument(
        "--serve-gateway", nargs=3, type=int, metavar=("PORT", "UPSTREAM_PORT", "WORKERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(*args.serve_gateway)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="rosetta-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers drop root and must read the static file
        upstream_port = free_port()
        start_static_upstream(stack, workdir, upstream_port)
        targets: dict[str, tuple[int, list[str]]] = {"direct": (upstream_port, [])}
        gateway_names = []
        pids = {}
        for workers in args.workers:
            name = f"gateway-w{workers}"
            port = free_port()
            pids[name] = start_gateway(stack, port, upstream_port, workers)
            targets[name] = (port, gateway_headers())
            gateway_names.append(name)
        pairs = []
        for workers in args.workers if args.baseline else ():
            name = f"baseline-w{workers}"
            port = free_port()
            pids[name] = start_gateway(stack, port, upstream_port, workers, args.baseline.resolve())
            targets[name] = (port, gateway_headers())
            pairs.append((f"gateway-w{workers}", name))
        proxy_port = free_port()
        start_nginx_proxy(stack, workdir, proxy_port, upstream_port)
        targets["nginx-proxy"] = (proxy_port, [])
        chp = install_chp()
        if chp is not None:
            chp_port = free_port()
            start_chp(stack, chp, chp_port, upstream_port)
            targets["chp"] = (chp_port, [])

        results: dict[str, dict[int, dict]] = {}
        for name, (port, headers) in targets.items():
            run_wrk(port, 1, 1, headers)  # warm up connections, caches and the JIT
            for connections in CONNECTIONS:
                results.setdefault(name, {})[connections] = run_wrk(port, connections, args.duration, headers)
                print(f"measured {name} c={connections}: {results[name][connections]['rps']:.0f} req/s", flush=True)
        report(results, gateway_names)
        if pairs:
            compare(targets, pids, pairs, args.rounds, args.duration)


if __name__ == "__main__":
    main()
