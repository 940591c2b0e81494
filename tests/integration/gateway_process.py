"""A real gateway in a process of its own, answering from a fixed route table (no database),
for tests that stop, restart or replace gateway processes.

    python -m tests.integration.gateway_process serve --route t1=127.0.0.1:8080 [--port N | --listen-fds 3]
                                                      [--used-tokens FILE]
    python -m tests.integration.gateway_process supervise --route ... --port N [--used-tokens FILE]

``serve`` runs one gateway (SIGTERM drains it, as ``rosetta gateway``); ``supervise`` holds the
listening socket and runs the gateway under ``rosetta.processes.supervisor`` as ``rosetta run``
does, so SIGHUP replaces it. Every route belongs to user 1 (epoch 0), who holds the cookies
``tests.integration.gateway_support.access_cookie`` makes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rosetta.gateway.proxy import GatewayConfig, inherited_sockets, listening_sockets, run_gateway
from rosetta.gateway.routes import Route, RouteTable
from rosetta.processes.supervisor import Supervisor, report_ready
from tests.integration.gateway_support import KEY, OWNER, PUBLIC_URL


def route_table(routes: list[str]) -> RouteTable:
    table = {}
    for route in routes:
        task_id, _, address = route.partition("=")
        host, _, port = address.rpartition(":")
        table[task_id] = Route(task_id, task_id, OWNER, "running", (host, int(port)))
    return RouteTable(routes=table, epochs={OWNER: 0})


def serve(args: argparse.Namespace) -> int:
    config = GatewayConfig(
        listen=[("127.0.0.1", args.port)],
        tasks_domain="localhost",
        platform_upstream=("127.0.0.1", 9),  # nothing: the tests use task origins only
        public_url=PUBLIC_URL,
        key=KEY,
        used_tokens=Path(args.used_tokens) if args.used_tokens else None,
        drain_timeout=60,
    )
    sockets = inherited_sockets([int(fd) for fd in args.listen_fds.split(",")]) if args.listen_fds else None
    table = route_table(args.route)
    return run_gateway(config, lambda: table, listener=None, sockets=sockets, ready=report_ready)


def supervise(args: argparse.Namespace) -> int:
    sockets = listening_sockets([("127.0.0.1", args.port)])
    fds = [sock.fileno() for group in sockets for sock in group]
    command = [sys.executable, "-m", __spec__.name, "serve", "--listen-fds", ",".join(map(str, fds))]
    command += [f"--route={route}" for route in args.route]
    if args.used_tokens:
        command += ["--used-tokens", args.used_tokens]
    supervisor = Supervisor({"gateway": command}, pass_fds={"gateway": fds}, graceful=frozenset({"gateway"}))
    return supervisor.run()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("serve", "supervise"))
    parser.add_argument("--route", action="append", default=[], help="TASK=HOST:PORT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--listen-fds")
    parser.add_argument("--used-tokens")
    args = parser.parse_args()
    return serve(args) if args.mode == "serve" else supervise(args)


if __name__ == "__main__":
    sys.exit(main())
