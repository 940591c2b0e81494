"""Throwaway "machines" for tests: a network namespace joined to this one by a veth pair,
with an HTTP listener inside. Tests aim their connection attempts only at these addresses
(or at containers they started), one attempt at a time, never at a range or another host."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

_numbers = itertools.count(os.getpid() % 1000)

LISTENER = """
import http.server, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"reached")
    def log_message(self, *args): pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Hello).serve_forever()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def machine(address: str, host_side: str, prefix: int = 30, port: int = 8080) -> Iterator[tuple[str, int]]:
    """A namespace at ``address`` (this machine reaches it through ``host_side``) serving HTTP
    on ``port``; yields (address, port)."""
    with _namespace(address, host_side, prefix) as name:
        _ip("-n", name, "route", "add", "default", "via", host_side)
        server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{name}", sys.executable, "-c", LISTENER, address, str(port)]
        )
        try:
            _until_it_answers(address, port)
            yield address, port
        finally:
            server.kill()
            server.wait()


@contextlib.contextmanager
def _namespace(address: str, host_side: str, prefix: int) -> Iterator[str]:
    """A network namespace at ``address``, joined to this machine (``host_side``) by a veth
    pair; yields its name, and removes both when done."""
    number = next(_numbers)
    name, outer, inner = f"rtest{number}", f"rtv{number}", f"rtp{number}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", name)
        _ip("addr", "add", f"{host_side}/{prefix}", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", name, "addr", "add", f"{address}/{prefix}", "dev", inner)
        _ip("-n", name, "link", "set", inner, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class _EveryAddress(HTTPServer):
    """Listens on every address of this machine, IPv4 and IPv6 alike (``::``, not IPv6-only)."""

    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


@contextlib.contextmanager
def host_listener() -> Iterator[int]:
    """An HTTP server of this machine on every address of both families (as careless services
    listen); its port."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reached")

        def log_message(self, *args):
            pass

    server = _EveryAddress(("::", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def ipv6_host(*addresses: str) -> Iterator[Callable]:
    """One "machine" with several IPv6 addresses (each "ADDRESS/PREFIX", on its loopback), as a
    host given a /64 has: a network namespace of its own. Yields ``inside(function, *args)``,
    which runs ``function`` in a thread that is in the namespace: the sockets it makes are the
    namespace's, usable from any thread afterwards (a listener there, clients connecting to it)."""
    name = f"rtest6x{next(_numbers)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for address in addresses:
            _ip("-n", name, "addr", "add", address, "dev", "lo", "nodad")
        with ThreadPoolExecutor(1, initializer=_enter_namespace, initargs=(name,)) as thread:
            yield lambda function, *args: thread.submit(function, *args).result()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _enter_namespace(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}") as namespace:
        if libc.setns(namespace.fileno(), 0x40000000) != 0:  # CLONE_NEWNET: this thread only
            raise OSError(ctypes.get_errno(), f"cannot enter network namespace {name}")


def connected_from(source: str, destination: str, port: int) -> socket.socket:
    """A TCP connection from ``source`` (non-blocking once made, for asyncio)."""
    sock = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET)
    sock.bind((source, 0))
    sock.connect((destination, port))
    sock.setblocking(False)
    return sock


def _until_it_answers(address: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"the test machine at {address}:{port} did not come up")


@contextlib.contextmanager
def quiet_browser(address: str, host_side: str, prefix: int = 30) -> Iterator[tuple[str, Path]]:
    """A Chromium in a network namespace of its own, joined to this machine by a veth pair:
    there no address comes and goes (here every task network adds a bridge address and takes
    it away, and Chromium abandons requests in flight on each: ERR_NETWORK_CHANGED). Yields
    this machine's address as the browser reaches it (``host_side``: servers it uses listen
    there too) and an executable that starts Debian's Chromium in the namespace, for
    Playwright's ``executable_path``. Chromium still resolves ``*.localhost`` to its own
    loopback: map names to ``host_side`` with ``--host-resolver-rules``."""
    with (
        _namespace(address, host_side, prefix) as name,
        tempfile.TemporaryDirectory(prefix="rosetta-browser-") as directory,
    ):
        executable = Path(directory) / "chromium"
        executable.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{name} /usr/bin/chromium "$@"\n')
        executable.chmod(0o700)
        yield host_side, executable
