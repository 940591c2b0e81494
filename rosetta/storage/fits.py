"""FITS files at a glance: each HDU's header, and an image HDU drawn as a PNG with DS9's
default scaling (zscale limits, linear), north up (FITS rows start at the bottom).

This runs only in a preview's sandbox (rosetta.storage.preview), never in the web process: a
file is anyone's, and a few hundred bytes of header can declare terabytes. What it decodes is
bounded here by what the headers say (HDUs, pixels, compression tiles, header text), before any
data is read; the sandbox bounds the rest (memory, time).
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from PIL import Image

from rosetta.storage.errors import PathRefused, TooLargeToPreview

MAX_SIDE = 1024  # pixels on the longer side of a preview
MAX_HDUS = 1000  # HDUs described, or looked through for an image
MAX_PIXELS = 2**27  # pixels of the plane drawn (about 11,600 × 11,600)
MAX_TILE_PIXELS = 2**24  # pixels of one compression tile, which is decompressed whole
MAX_HEADER_TEXT = 8 * 2**20  # characters of header text, all HDUs together


def _open(handle) -> fits.HDUList:
    try:
        return fits.open(handle, memmap=False, lazy_load_hdus=True, ignore_missing_simple=True)
    except (OSError, ValueError, TypeError) as error:
        raise PathRefused(f"This is not a FITS file astropy can read: {error}") from None


def _hdus(hdus: fits.HDUList):
    """The HDUs one by one, each read as it comes (never all at once), up to MAX_HDUS."""
    for index, hdu in enumerate(hdus):
        if index >= MAX_HDUS:
            raise TooLargeToPreview(f"This file has more than {MAX_HDUS:,} HDUs: download it to look at it.")
        yield index, hdu


def describe(handle) -> list[dict]:
    with warnings.catch_warnings(), _open(handle) as hdus:
        warnings.simplefilter("ignore")
        described, text = [], 0
        for index, hdu in _hdus(hdus):
            header = hdu.header.tostring(sep="\n", endcard=False).rstrip()
            text += len(header)
            if text > MAX_HEADER_TEXT:
                raise TooLargeToPreview(
                    f"Its headers are longer than {MAX_HEADER_TEXT // 2**20} MiB: download it to look at them."
                )
            shape = list(hdu.shape) if getattr(hdu, "shape", None) else []
            described.append({
                "index": index, "name": hdu.name, "kind": type(hdu).__name__, "shape": shape,
                "image": _is_image(hdu), "header": header,
            })  # fmt: skip
        return described


def _is_image(hdu) -> bool:
    return hdu.is_image and hdu.header.get("NAXIS", 0) >= 2 and all(hdu.header.get(f"NAXIS{i}", 0) for i in (1, 2))


def render(handle, index: int | None = None) -> bytes:
    """The PNG of HDU ``index``, or of the first image HDU."""
    with warnings.catch_warnings(), _open(handle) as hdus:
        warnings.simplefilter("ignore")
        hdu = _image_hdu(hdus, index)
        check_size(hdu.shape, getattr(hdu, "tile_shape", None) if isinstance(hdu, fits.CompImageHDU) else None)
        data = _first_plane_sampled(hdu, _step(hdu.shape))
        finite = np.isfinite(data)
        if not finite.any():
            raise PathRefused("This image has no finite values.")
        low, high = ZScaleInterval().get_limits(data[finite])
        scaled = np.clip((np.nan_to_num(data, nan=low) - low) / ((high - low) or 1.0), 0, 1)
        picture = Image.fromarray(np.flipud((scaled * 255).astype("uint8")), mode="L")
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=False)
        return out.getvalue()


def _image_hdu(hdus: fits.HDUList, index: int | None):
    """HDU ``index`` when it exists, else the first image HDU."""
    if index is not None and 0 <= index < MAX_HDUS:
        try:
            chosen = hdus[index]
        except IndexError:
            chosen = None
        if chosen is not None:
            if not _is_image(chosen):
                raise PathRefused(f"HDU {index} of this FITS file is not an image.")
            return chosen
    hdu = next((hdu for _, hdu in _hdus(hdus) if _is_image(hdu)), None)
    if hdu is None:
        raise PathRefused("This FITS file has no image to show.")
    return hdu


def check_size(shape: tuple[int, ...], tile_shape: tuple[int, ...] | None) -> None:
    """Refuse, before reading any data, an image whose first plane or compression tiles are
    too large to draw (what a header declares costs nothing to write)."""
    pixels = int(shape[-1]) * int(shape[-2])
    if pixels > MAX_PIXELS:
        raise TooLargeToPreview(
            f"This image has {pixels:,} pixels; previews draw up to {MAX_PIXELS:,}: download it to look at it."
        )
    if tile_shape is not None and math.prod(int(side) for side in tile_shape) > MAX_TILE_PIXELS:
        raise TooLargeToPreview(
            f"This image is compressed in tiles of {math.prod(int(side) for side in tile_shape):,} pixels; "
            f"previews decompress tiles of up to {MAX_TILE_PIXELS:,}: download it to look at it."
        )


def _step(shape: tuple[int, ...]) -> int:
    return max(1, -(-max(int(shape[-1]), int(shape[-2])) // MAX_SIDE))


def _first_plane_sampled(hdu, step: int) -> np.ndarray:
    """Every ``step``-th pixel of every ``step``-th row of the first plane, as float64, read a
    band of rows at a time: one row of an uncompressed image, one row of tiles of a compressed
    one (a tile is decompressed whole), never the whole image."""
    rows, _ = hdu.shape[-2:]
    leading = (0,) * (len(hdu.shape) - 2)  # a cube: its first plane
    band = int(hdu.tile_shape[-2]) if isinstance(hdu, fits.CompImageHDU) else 1
    sampled = []
    for start in range(0, rows, band):
        end = min(start + band, rows)
        first = -(-start // step) * step  # the first sampled row in this band
        if first < end:
            block = hdu.section[(*leading, slice(start, end), slice(None))]
            sampled.append(np.asarray(block[first - start :: step, ::step], dtype="float64"))
    return np.concatenate(sampled)
