"""FITS previews in the file manager, against a real `rosetta run`: a normal image (plain and
tile-compressed) is drawn north up; hostile files — a tile-compressed image that decompresses to
gigabytes, 20,001 HDUs, a header that declares terabytes over a few bytes of data, a header of a
million lines — get a clear 413 or 422 within seconds, while the web process's memory stays
flat and other users' requests stay fast."""

from __future__ import annotations

import gzip
import io
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

BLOCK = 2880


@pytest.fixture(scope="module")
def clients(platform):
    """(client of a user whose folder holds the files, client of another user)."""
    owner = platform.api(platform.create_user("fits-owner"))
    other = platform.api(platform.create_user("fits-other"))
    assert owner.get("/api/storages/home/entries").status_code == 200  # makes the folder
    assert other.get("/api/storages/home/entries").status_code == 200
    yield owner, other
    owner.close()
    other.close()


def folder(platform, username: str) -> Path:
    return platform.home / "storage" / "home" / username


def header_block(*cards: str) -> bytes:
    """A FITS header written by hand: the cards, END, padded to whole 2,880-byte blocks."""
    text = "".join(card.ljust(80) for card in (*cards, "END"))
    return text.ljust(-(-len(text) // BLOCK) * BLOCK).encode()


def card(keyword: str, value) -> str:
    if isinstance(value, str):
        return f"{keyword:<8}= '{value:<8}'"
    return f"{keyword:<8}= {'T' if value is True else value:>20}"


def decompression_bomb(path: Path, side: int, tile_rows: int, bitpix: int = 32) -> None:
    """A tile-compressed image of zeros (GZIP_1): each tile is a few hundred bytes on disk and
    ``tile_rows`` × ``side`` pixels once decompressed. Built tile by tile, never whole."""
    tile = gzip.compress(bytes(side * tile_rows * abs(bitpix) // 8), compresslevel=9)
    tiles = np.empty(side // tile_rows, dtype=object)
    tiles[:] = [np.frombuffer(tile, dtype="u1")] * len(tiles)
    table = fits.BinTableHDU.from_columns([fits.Column(name="COMPRESSED_DATA", format=f"1PB({len(tile)})",
                                                       array=tiles)])  # fmt: skip
    table.header.update(ZIMAGE=True, ZBITPIX=bitpix, ZNAXIS=2, ZNAXIS1=side, ZNAXIS2=side, ZTILE1=side,
                        ZTILE2=tile_rows, ZCMPTYPE="GZIP_1")  # fmt: skip
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)


def many_hdus(path: Path, count: int) -> None:
    with path.open("wb") as out:
        out.write(header_block(card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 0), card("EXTEND", True)))
        extension = header_block(
            card("XTENSION", "IMAGE"), card("BITPIX", 8), card("NAXIS", 0), card("PCOUNT", 0), card("GCOUNT", 1)
        )
        for _ in range(count - 1):
            out.write(extension)


def huge_naxis(path: Path) -> None:
    """200,000 × 200,000 doubles (320 GB) declared, one block of data present."""
    cards = (
        card("SIMPLE", True),
        card("BITPIX", -64),
        card("NAXIS", 2),
        card("NAXIS1", 200_000),
        card("NAXIS2", 200_000),
    )
    path.write_bytes(header_block(*cards) + bytes(BLOCK))


def long_header(path: Path, lines: int) -> None:
    path.write_bytes(header_block(card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 0),
                                  *(f"COMMENT {n}" for n in range(lines))))  # fmt: skip


def web_pid(platform) -> int:
    supervisor = platform.processes["run"].pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor and argv[-2:] == [b"web", b""]:
                return int(entry.name)
    raise AssertionError("no web process under rosetta run")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS:
    """The highest RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def __enter__(self):
        self.before = self.peak = rss_mib(self.pid)
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def png_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_a_normal_fits_image_previews_plain_and_tile_compressed(platform, clients):
    owner, _ = clients
    rows, columns = np.mgrid[0:1200, 0:1600]
    image = (rows * 10.0 + columns * 0.01).astype("float32")  # brighter towards the top (north)
    hdus = fits.HDUList([
        fits.PrimaryHDU(header=fits.Header([("OBJECT", "M31")])),
        fits.ImageHDU(image, name="SCI"),
        fits.CompImageHDU(image, name="PACKED", compression_type="RICE_1", quantize_level=0),
        fits.BinTableHDU.from_columns([fits.Column(name="FLUX", format="E", array=np.ones(3))], name="TAB"),
    ])  # fmt: skip
    hdus.writeto(folder(platform, "fits-owner") / "m31.fits")

    described = owner.get("/api/storages/home/fits", params={"path": "m31.fits"})
    assert described.status_code == 200, described.text
    hdus = described.json()["hdus"]
    assert [(h["name"], h["kind"], h["shape"], h["image"]) for h in hdus] == [
        ("PRIMARY", "PrimaryHDU", [], False),
        ("SCI", "ImageHDU", [1200, 1600], True),
        ("PACKED", "CompImageHDU", [1200, 1600], True),
        ("TAB", "BinTableHDU", [], False),
    ]
    assert "OBJECT  = 'M31     '" in hdus[0]["header"]

    plain = png_of(owner.get("/api/storages/home/fits.png", params={"path": "m31.fits"}))  # the first image
    packed = png_of(owner.get("/api/storages/home/fits.png", params={"path": "m31.fits", "hdu": 2}))
    assert plain.shape == packed.shape == (600, 800)  # every second pixel: at most 1,024 a side
    assert np.abs(plain.astype(int) - packed).max() <= 2  # RICE quantises floats a little
    assert plain[0].mean() > plain[-1].mean()  # north up: FITS rows start at the bottom
    table = owner.get("/api/storages/home/fits.png", params={"path": "m31.fits", "hdu": 3})
    assert table.status_code == 400 and "not an image" in table.json()["detail"]


HOSTILE = {
    # name: (how to make it, the statuses each of describe / draw may answer, words said)
    "bomb.fits": (lambda p: decompression_bomb(p, 16384, 1), (200, 413), "pixels"),  # 1 GiB in 1.7 MB
    "one-tile.fits": (lambda p: decompression_bomb(p, 8192, 8192, -32), (200, 413), "tiles"),  # 256 MiB in 0.3 MB
    "many.fits": (lambda p: many_hdus(p, 20_001), (413, 413), "more than 1,000 HDUs"),
    "naxis.fits": (huge_naxis, (200, 413), "40,000,000,000 pixels"),
}


@pytest.fixture(scope="module")
def hostile(platform, clients):
    for name, (make, _, _) in HOSTILE.items():
        make(folder(platform, "fits-owner") / name)
    long_header(folder(platform, "fits-owner") / "long-header.fits", 1_000_000)  # 80 MB
    return HOSTILE


def test_hostile_fits_files_get_a_clear_4xx_quickly_and_the_web_process_stays_small(platform, clients, hostile):
    owner, _ = clients
    small = folder(platform, "fits-owner") / "small.fits"
    fits.PrimaryHDU(np.arange(100.0).reshape(10, 10)).writeto(small, overwrite=True)
    assert owner.get("/api/storages/home/fits.png", params={"path": "small.fits"}).status_code == 200  # warm

    answers = {}
    with PeakRSS(web_pid(platform)) as memory:
        for name, (_, statuses, words) in hostile.items():
            for endpoint, status in zip(("fits", "fits.png"), statuses, strict=True):
                began = time.monotonic()
                answer = owner.get(f"/api/storages/home/{endpoint}", params={"path": name})
                took = time.monotonic() - began
                answers[name, endpoint] = (answer.status_code, round(took, 2))
                assert answer.status_code == status, (name, endpoint, answer.text)
                assert took < 5, (name, endpoint, took)
                if status != 200:
                    assert words in answer.json()["detail"], answer.text
        # What no header check catches: the sandbox's own limits (time, memory) end it.
        for endpoint in ("fits", "fits.png"):
            began = time.monotonic()
            answer = owner.get(f"/api/storages/home/{endpoint}", params={"path": "long-header.fits"})
            took = time.monotonic() - began
            answers["long-header.fits", endpoint] = (answer.status_code, round(took, 2))
            assert answer.status_code in (413, 422), answer.text
            assert "download it" in answer.json()["detail"].lower() and took < 20
    grew = memory.peak - memory.before
    print(f"answers (status, seconds): {answers}; web RSS {memory.before:.0f} -> peak {memory.peak:.0f} MiB")
    assert grew < 32, f"the web process grew by {grew:.0f} MiB"


def test_four_hostile_previews_at_once_leave_other_users_fast(platform, clients, hostile):
    owner, other = clients

    def listing_seconds(count: int) -> list[float]:
        times = []
        for _ in range(count):
            began = time.monotonic()
            assert other.get("/api/storages/home/entries").status_code == 200
            times.append(time.monotonic() - began)
        return times

    quiet = statistics.median(listing_seconds(10))
    with ThreadPoolExecutor(4) as pool:
        began = time.monotonic()
        previews = [
            pool.submit(owner.get, "/api/storages/home/fits", params={"path": "long-header.fits"}, timeout=60)
            for _ in range(4)
        ]
        time.sleep(0.5)  # the previews are under way
        busy = listing_seconds(20)
        statuses = [preview.result().status_code for preview in previews]
        took = time.monotonic() - began
    print(f"listing median {quiet * 1000:.0f} ms quiet, {statistics.median(busy) * 1000:.0f} ms "
          f"(max {max(busy) * 1000:.0f} ms) during four previews ({statuses}, {took:.1f} s)")  # fmt: skip
    assert all(status in (413, 422, 503) for status in statuses), statuses
    assert statistics.median(busy) < max(0.25, 4 * quiet) and max(busy) < 2
