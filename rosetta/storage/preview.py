"""Previews of FITS files (rosetta.storage.fits), made in a sandbox, never in the web process.

A file is anyone's, and what it declares costs nothing to write: a 0.5 MiB tile-compressed
image can decompress to gigabytes, a file can hold tens of thousands of HDUs. So each preview
runs in a process of its own that, before it reads a byte, limits itself: PREVIEW_MEMORY of
address space, PREVIEW_CPU_SECONDS of CPU time, PREVIEW_WALL_SECONDS in all, a lower priority
than the web's, no file writes. It reads the file from a descriptor it is handed (opened here
as the file manager opens files, no link followed; a remote file is first copied to a temporary
file) and writes its answer on a socket: at most MAX_ANSWER bytes, all the web process ever
holds. At most MAX_AT_ONCE previews run at once per web process; the next wait their turn for
up to QUEUE_SECONDS.

The processes come from a preview server (``python -m rosetta.storage.preview FD``) that the
web process starts on first use and that ends with it: it loads astropy once and forks a child
per preview, so a preview starts in milliseconds, not the second an import takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile

from rosetta.storage.errors import FileProblem, PathRefused, TooLargeToPreview

PREVIEW_CPU_SECONDS = 6  # CPU time of one preview
PREVIEW_WALL_SECONDS = 15  # its wall time: at a low priority on a busy machine it may wait for a core
PREVIEW_MEMORY = 512 * 2**20  # address space a preview may add to what the server has mapped
MAX_AT_ONCE = 2  # previews running at once per web process
QUEUE_SECONDS = 10  # how long a preview waits for its turn
SERVER_START_SECONDS = 10  # the preview server loads astropy before the first child starts
MAX_ANSWER = 32 * 2**20  # bytes of one answer (headers of many HDUs; a PNG)
MAX_FILE_BYTES = 512 * 2**20  # larger files are downloaded, not previewed
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class PreviewFailed(FileProblem):
    """422: the preview ran out of time or memory, or stopped on something it could not read."""

    status = 422


class PreviewsBusy(FileProblem):
    """503: other previews held every turn for QUEUE_SECONDS."""

    status = 503


# -- the web process's side -------------------------------------------------------------------


async def fits_hdus(files, path) -> list[dict]:
    """Each HDU of the FITS file at ``path``: name, kind, shape, whether it is an image, header."""
    async with _opened(files, path) as fd:
        return json.loads(await _sandbox.run(fd, {"do": "describe"}))["hdus"]


async def fits_png(files, path, hdu: int | None) -> bytes:
    """HDU ``hdu`` (or the first image HDU) drawn as a PNG."""
    async with _opened(files, path) as fd:
        return await _sandbox.run(fd, {"do": "render", "hdu": hdu})


@contextlib.asynccontextmanager
async def _opened(files, path):
    """A descriptor of the file: the file itself on this machine, else a temporary copy."""
    from rosetta.storage.local import LocalFiles
    from rosetta.storage.paths import joined

    entry = await files.stat(path)
    if entry.kind != "file":
        raise PathRefused(f"{joined(path)!r} is not a file.")
    if entry.size > MAX_FILE_BYTES:
        raise TooLargeToPreview(f"{entry.name} is too large to preview ({entry.size // 2**20} MiB): download it.")
    if isinstance(files, LocalFiles):
        fd = await asyncio.to_thread(files._open_file, path)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryFile() as copy:
        copied = 0
        async for chunk in files.read(path):
            copied += len(chunk)
            if copied > MAX_FILE_BYTES:  # it grew since
                raise TooLargeToPreview(f"{entry.name} is too large to preview: download it.")
            await asyncio.to_thread(copy.write, chunk)
        await asyncio.to_thread(copy.flush)
        yield copy.fileno()


class Sandbox:
    """The preview server of this web process, and the turns previews take."""

    def __init__(self) -> None:
        self._server: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._turns: asyncio.Semaphore | None = None

    async def run(self, fd: int, request: dict) -> bytes:
        """The preview's answer; a FileProblem saying why there is none."""
        if self._turns is None:
            self._turns = asyncio.Semaphore(MAX_AT_ONCE)
        try:
            await asyncio.wait_for(self._turns.acquire(), QUEUE_SECONDS)
        except TimeoutError:
            raise PreviewsBusy("Too many files are being previewed at the moment; try again shortly.") from None
        try:
            return await self._run(fd, request)
        finally:
            self._turns.release()

    async def _run(self, fd: int, request: dict) -> bytes:
        ours, theirs = socket.socketpair()
        with ours:
            with theirs:
                self._send(json.dumps(request).encode(), [fd, theirs.fileno()])
            ours.setblocking(False)
            try:
                answer = await asyncio.wait_for(_read_answer(ours), PREVIEW_WALL_SECONDS + SERVER_START_SECONDS)
            except TimeoutError:
                answer = b""  # the child ends itself at its deadline
        head, newline, body = answer.partition(b"\n")
        if not newline:  # the child was ended: by its time or memory limit, or a crash
            raise PreviewFailed(
                f"Previewing this file stopped: it needs more than {PREVIEW_CPU_SECONDS} s of computing or "
                f"{PREVIEW_MEMORY // 2**20} MiB. Download it to look at it."
            )
        status, detail = json.loads(head)
        if status != 200:
            raise {400: PathRefused, 413: TooLargeToPreview}.get(status, PreviewFailed)(detail)
        return body

    def _send(self, message: bytes, fds: list[int]) -> None:
        for attempt in (1, 2):
            try:
                socket.send_fds(self._server_socket(), [message], fds)
                return
            except BlockingIOError:
                raise PreviewsBusy("The preview server is busy; try again shortly.") from None
            except OSError:  # the server is gone: start another, once
                self._stop_server()
                if attempt == 2:
                    raise PreviewFailed("Previews are not available right now; try again shortly.") from None

    def _server_socket(self) -> socket.socket:
        if self._server is not None and self._server.poll() is None and self._control is not None:
            return self._control
        self._stop_server()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._server = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, **ONE_THREAD},
            )
        ours.setblocking(False)
        self._control = ours
        return ours

    def _stop_server(self) -> None:
        if self._control is not None:
            self._control.close()  # the server ends when it reads the end of this
            self._control = None
        if self._server is not None:
            if self._server.poll() is None:
                self._server.kill()
            self._server.wait()
            self._server = None


async def _read_answer(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    answer = bytearray()
    while chunk := await loop.sock_recv(sock, 256 * 1024):
        answer += chunk
        if len(answer) > MAX_ANSWER:
            raise TooLargeToPreview(
                f"Its preview would be larger than {MAX_ANSWER // 2**20} MiB: download it to look at it."
            )
    return bytes(answer)


_sandbox = Sandbox()


# -- the preview server and its children -------------------------------------------------------


def serve(control_fd: int) -> None:
    """Fork a child for each request until the web process closes its end."""
    control = socket.socket(fileno=control_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    from rosetta.storage import fits  # loaded once, for every child

    while True:
        message, fds, _, _ = socket.recv_fds(control, 4096, 2)
        if not message:
            return  # the web process is gone
        if len(fds) == 2 and os.fork() == 0:
            control.close()
            try:
                _child(fits, message, *fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def _child(fits, message: bytes, file_fd: int, answer_fd: int) -> None:
    _limit_self()
    with socket.socket(fileno=answer_fd) as answer:
        status, detail, body = _answer(fits, message, file_fd)
        answer.sendall(json.dumps([status, detail]).encode() + b"\n" + body)


def _answer(fits, message: bytes, file_fd: int) -> tuple[int, str, bytes]:
    try:
        return 200, "", _preview(fits, json.loads(message), file_fd)
    except FileProblem as problem:
        return problem.status, str(problem), b""
    except MemoryError:
        return 413, f"Previewing this file needs more than {PREVIEW_MEMORY // 2**20} MiB: download it.", b""
    except Exception as error:  # whatever a damaged file makes astropy raise
        return 422, f"This FITS file could not be read: {str(error)[:300]}", b""


def _preview(fits, request: dict, file_fd: int) -> bytes:
    os.lseek(file_fd, 0, os.SEEK_SET)
    with os.fdopen(file_fd, "rb") as handle:
        if request.get("do") == "render":
            hdu = request.get("hdu")
            return fits.render(handle, hdu if isinstance(hdu, int) else None)
        return json.dumps({"hdus": fits.describe(handle)}).encode()


def _limit_self() -> None:
    """Bound this child before it reads a byte: memory, CPU and wall time, no file written."""
    os.nice(10)  # the web process's requests come first
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # astropy's warnings about a file are no one's business: not the web's log
    os.dup2(quiet, 2)
    os.close(quiet)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (PREVIEW_CPU_SECONDS, PREVIEW_CPU_SECONDS + 1))  # SIGXCPU ends it
    signal.alarm(PREVIEW_WALL_SECONDS)  # SIGALRM's default action ends it, whatever it is doing
    mapped = _address_space()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + PREVIEW_MEMORY, mapped + PREVIEW_MEMORY))


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


if __name__ == "__main__":
    serve(int(sys.argv[1]))
