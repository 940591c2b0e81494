"""Uploads to a local storage are written a batch behind, in a thread: whatever ends the upload,
the thread's write ends before the file's descriptor is closed, and nothing is left behind."""

import asyncio
import time

from rosetta.storage import local
from rosetta.storage.local import UPLOAD_PREFIX, LocalFiles

MIB = 1024 * 1024


def test_a_cancelled_upload_waits_for_the_write_in_flight_and_leaves_nothing(tmp_path, monkeypatch):
    finished: list[float] = []
    write = local._write_all

    def slow_disk(fd: int, batch: list[bytes]) -> None:  # the real write, late
        time.sleep(0.3)
        write(fd, batch)
        finished.append(time.monotonic())

    monkeypatch.setattr(local, "_write_all", slow_disk)

    async def upload() -> float:
        async def body():
            for _ in range(2 * local.WRITE_BATCH // MIB):  # two batches: the second waits for the first
                yield bytes(MIB)
            await asyncio.sleep(60)  # the client stalls

        task = asyncio.create_task(LocalFiles(str(tmp_path), read_only=False).write(("big.bin",), body()))
        await asyncio.sleep(0.1)  # the first batch is being written
        task.cancel()  # e.g. the server shuts down
        try:
            await task
        except asyncio.CancelledError:
            pass
        return time.monotonic()

    returned = asyncio.run(upload())
    assert finished and finished[0] <= returned, "the upload returned (and closed its file) while a write was on"
    assert [p.name for p in tmp_path.iterdir()] == [], "a partial file or a temporary was left"
    assert not any(p.name.startswith(UPLOAD_PREFIX) for p in tmp_path.iterdir())
