"""The file manager in Debian's Chromium: upload with progress, open a folder by keyboard, preview
text and a FITS image, rename, download, delete with confirmation."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from playwright.sync_api import expect

from tests.e2e.test_browser import page  # noqa: F401 -- the browser fixture

pytestmark = pytest.mark.skipif(not shutil.which("/usr/bin/chromium"), reason="needs Debian's chromium")


def test_upload_browse_preview_rename_download_and_delete(platform, page, tmp_path):  # noqa: F811
    platform.create_user("vera", password="dark matter rotation")
    page.goto(f"{platform.url}/login/?next=/files/")
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Password").fill("dark matter rotation")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/files/home/")
    expect(page.locator("[data-entries]")).to_contain_text("This folder is empty.")

    # A folder, made with the keyboard alone.
    page.get_by_role("button", name="New folder").click()
    page.keyboard.type("galaxies")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="galaxies")).to_be_visible()
    page.get_by_role("button", name="galaxies").focus()
    page.keyboard.press("Enter")
    expect(page.locator("[data-breadcrumbs]")).to_contain_text("home/galaxies")

    # Two files at once, into the open folder, with progress to the end.
    image = np.outer(np.hanning(64), np.hanning(48)) * 1000 + np.random.default_rng(1).normal(0, 5, (64, 48))
    fits.PrimaryHDU(image.astype("float32"), header=fits.Header([("OBJECT", "M31"), ("EXPTIME", 30.0)])).writeto(
        tmp_path / "m31.fits"
    )
    (tmp_path / "notes.txt").write_text("seeing 0.8 arcsec\n")
    page.set_input_files("[data-upload]", [str(tmp_path / "m31.fits"), str(tmp_path / "notes.txt")])
    expect(page.locator("[data-uploads] li[data-done]")).to_have_count(2)
    expect(page.get_by_role("button", name="m31.fits")).to_be_visible()
    assert (platform.home / "storage/home/vera/galaxies/notes.txt").read_text() == "seeing 0.8 arcsec\n"

    page.get_by_role("button", name="notes.txt").click()
    expect(page.locator("[data-text-preview]")).to_have_text("seeing 0.8 arcsec\n")
    page.get_by_role("button", name="m31.fits").click()
    expect(page.locator("[data-fits-header]").first).to_contain_text("OBJECT  = 'M31     '")
    fits_image = page.locator("[data-fits-image]")
    expect(fits_image).to_be_visible()
    page.wait_for_function("document.querySelector('[data-fits-image]').naturalWidth === 48")

    # Rename with F2, then download it as the browser would.
    page.get_by_role("button", name="notes.txt").focus()
    page.keyboard.press("F2")
    page.keyboard.press("Control+A")
    page.keyboard.type("night1.txt")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="night1.txt")).to_be_visible()
    page.get_by_role("checkbox", name="Select night1.txt").check()
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download", exact=True).click()
    download = downloading.value
    assert download.suggested_filename == "night1.txt"
    assert Path(download.path()).read_text() == "seeing 0.8 arcsec\n"

    # Delete asks first; cancelling keeps the file.
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("[data-dialog-text]")).to_contain_text("Delete “night1.txt”?")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="night1.txt")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="OK").click()
    expect(page.get_by_role("button", name="night1.txt")).to_have_count(0)
    assert not (platform.home / "storage/home/vera/galaxies/night1.txt").exists()

    # Hidden files show on request; sorting by size puts the larger first when descending.
    (platform.home / "storage/home/vera/galaxies/.hidden").write_text("x")
    page.keyboard.press("Backspace")
    page.get_by_role("button", name="galaxies").click()
    expect(page.get_by_role("button", name=".hidden")).to_have_count(0)
    page.get_by_label("Show hidden files").check()
    expect(page.get_by_role("button", name=".hidden")).to_be_visible()
    page.get_by_role("button", name="Size").click()
    page.get_by_role("button", name="Size").click()
    expect(page.locator("[data-entries] tr").first).to_have_attribute("data-name", "m31.fits")
