"""FITS files at a glance: each HDU's header, and an image HDU drawn as a PNG with DS9's
default scaling (zscale limits, linear), north up (FITS rows start at the bottom)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from PIL import Image

from rosetta.storage.errors import PathRefused

MAX_SIDE = 1024  # pixels on the longer side of a preview


def _open(handle) -> fits.HDUList:
    try:
        return fits.open(handle, memmap=False, lazy_load_hdus=True, ignore_missing_simple=True)
    except (OSError, ValueError, TypeError) as error:
        raise PathRefused(f"This is not a FITS file astropy can read: {error}") from None


def describe(handle) -> list[dict]:
    with warnings.catch_warnings(), _open(handle) as hdus:
        warnings.simplefilter("ignore")
        described = []
        for index, hdu in enumerate(hdus):
            shape = list(hdu.shape) if getattr(hdu, "shape", None) else []
            described.append({
                "index": index, "name": hdu.name, "kind": type(hdu).__name__, "shape": shape,
                "image": _is_image(hdu), "header": hdu.header.tostring(sep="\n", endcard=False).rstrip(),
            })  # fmt: skip
        return described


def _is_image(hdu) -> bool:
    return hdu.is_image and hdu.header.get("NAXIS", 0) >= 2 and all(hdu.header.get(f"NAXIS{i}", 0) for i in (1, 2))


def render(handle, index: int | None = None) -> bytes:
    """The PNG of HDU ``index``, or of the first image HDU."""
    with warnings.catch_warnings(), _open(handle) as hdus:
        warnings.simplefilter("ignore")
        candidates = [hdus[index]] if index is not None and 0 <= index < len(hdus) else list(hdus)
        hdu = next((h for h in candidates if _is_image(h)), None)
        if hdu is None:
            raise PathRefused("This FITS file has no image to show.")
        data = np.asarray(hdu.data)
        while data.ndim > 2:  # a cube: its first plane
            data = data[0]
        step = max(1, -(-max(data.shape) // MAX_SIDE))
        data = np.asarray(data[::step, ::step], dtype="float64")
        finite = np.isfinite(data)
        if not finite.any():
            raise PathRefused("This image has no finite values.")
        low, high = ZScaleInterval().get_limits(data[finite])
        scaled = np.clip((np.nan_to_num(data, nan=low) - low) / ((high - low) or 1.0), 0, 1)
        picture = Image.fromarray(np.flipud((scaled * 255).astype("uint8")), mode="L")
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=False)
        return out.getvalue()
