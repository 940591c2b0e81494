"""Child processes under asyncio, with exit statuses that cannot be misread.

``Process.kill()`` polls the child before signalling it (``Popen.send_signal``): when the
child has just exited, that poll reaps it before asyncio's child watcher can, and asyncio then
reports exit status 255 ("Unknown child process pid N") for a program that succeeded. Here a
child is signalled with ``os.kill``, only while its status is unrecorded, so nothing but the
watcher ever reaps and every status is the real one.

A process that owns its event loop (the controller) also switches to the pidfd watcher
(Python 3.12's default): it reaps in the loop's own thread in the same step that records the
status, so "unrecorded" then also means "not reaped", and a signal can never reach a
recycled pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import warnings


def use_pidfd_watcher() -> None:
    """For the running loop, in a process that runs only this loop."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        return  # uvloop reaps in its own loop (libuv); no asyncio child watcher is involved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # watchers are implicit from 3.12 on
        policy = asyncio.get_event_loop_policy()
        watcher = policy.get_child_watcher()
        if isinstance(watcher, asyncio.PidfdChildWatcher) and watcher.is_active():
            return
        watcher = asyncio.PidfdChildWatcher()
        policy.set_child_watcher(watcher)
        watcher.attach_loop(loop)


async def spawn(argv, **kwargs) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec``; end the process with ``end`` or ``kill`` below."""
    return await asyncio.create_subprocess_exec(*argv, **kwargs)


def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the child unless its exit was already recorded; never reaps."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


async def end(process: asyncio.subprocess.Process, grace: float = 0.0) -> int:
    """Let the child exit on its own for up to ``grace`` seconds, then kill it; its status."""
    if process.returncode is None and grace > 0:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    kill(process)
    return await process.wait()


def ending_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel sends it SIGTERM when the thread that started it ends, even
    by SIGKILL: util-linux's setpriv sets that in the child and execs ``argv``. Not preexec_fn,
    which runs Python between fork and exec, where another thread may hold a lock (asyncio's
    executors, the database's) that the child then waits for forever."""
    return ["setpriv", "--pdeathsig", "TERM", "--", *argv]
