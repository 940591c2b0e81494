"""The file manager in Debian's Chromium: upload with progress, open a folder by keyboard, preview
text and a FITS image, rename, download, delete with confirmation."""

import re
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


def log_in_to_files(page, platform, name, password):  # noqa: F811
    page.goto(f"{platform.url}/login/?next=/files/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/files/home/")
    # Listed: the page's script runs (an upload chosen before it would go unnoticed).
    expect(page.locator("[data-entries]")).to_contain_text("This folder is empty.")


def test_a_double_click_opens_a_folder_once_and_an_empty_move_goes_to_the_top(platform, page, tmp_path):  # noqa: F811
    platform.create_user("wheeler", password="spokes and hubs and rims")
    log_in_to_files(page, platform, "wheeler", "spokes and hubs and rims")
    page.get_by_role("button", name="New folder").click()
    page.keyboard.type("wheels")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="wheels")).to_be_visible()
    # The listing of the folder opened is held back, as a slow storage would: the row clicked
    # twice is still there for the second click.
    held = []
    listing = re.compile(r"/api/storages/home/entries\?")
    page.route(listing, lambda route: held.append(route))
    with page.expect_request(listing):
        page.get_by_role("button", name="wheels").dblclick()
    for route in held:
        route.continue_()
    page.unroute(listing)
    expect(page.locator("[data-breadcrumbs]")).to_have_text("home/wheels")
    expect(page.locator("[data-entries]")).to_contain_text("This folder is empty.")
    expect(page.locator("[data-error]")).to_be_hidden()
    assert page.url.endswith("?path=wheels")
    (tmp_path / "axle.txt").write_text("20 mm\n")
    page.set_input_files("[data-upload]", str(tmp_path / "axle.txt"))
    expect(page.locator("[data-uploads] li[data-done]")).to_have_count(1)
    assert (platform.home / "storage/home/wheeler/wheels/axle.txt").read_text() == "20 mm\n"

    # Move with the destination emptied: into the storage's top folder, as the dialog says.
    page.get_by_role("checkbox", name="Select axle.txt").check()
    page.get_by_role("button", name="Move").click()
    expect(page.locator("[data-dialog-text]")).to_contain_text("empty for the top folder itself")
    page.locator("[data-dialog-input]").fill("")
    page.get_by_role("button", name="OK").click()
    expect(page.get_by_role("button", name="axle.txt")).to_have_count(0)
    expect(page.locator("[data-error]")).to_be_hidden()
    assert (platform.home / "storage/home/wheeler/axle.txt").read_text() == "20 mm\n"
    assert not (platform.home / "storage/home/wheeler/wheels/axle.txt").exists()


# Words of the names that wrap inside themselves (after _ - . is where a name should break).
BROKEN_NAME_PARTS = """(selector) => {
  const broken = [];
  for (const element of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    const nodes = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
    for (const node of nodes) {
      for (const match of node.textContent.matchAll(/[^\\s_\\-.]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (new Set(Array.from(range.getClientRects(), (rect) => Math.round(rect.top))).size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""

LINES = """(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set(Array.from(range.getClientRects(), (rect) => Math.round(rect.top))).size;
}"""


def test_a_preview_fits_a_phone(platform, page, tmp_path):  # noqa: F811
    platform.create_user("hubble", password="redshift and distance")
    page.set_viewport_size({"width": 375, "height": 740})
    log_in_to_files(page, platform, "hubble", "redshift and distance")
    name = "ngc1300_r-band_calibrated_stack_2026-01-05.fits"
    header = fits.Header([("OBJECT", "NGC 1300"), ("COMMENT", "barred spiral galaxy in Eridanus " * 2)])
    fits.PrimaryHDU(np.ones((32, 24), dtype="float32"), header=header).writeto(tmp_path / name)
    page.set_input_files("[data-upload]", str(tmp_path / name))
    expect(page.locator("[data-uploads] li[data-done]")).to_have_count(1)
    page.get_by_role("button", name=name).click()
    expect(page.locator("[data-fits-header]").first).to_contain_text("OBJECT  = 'NGC 1300'")
    page.wait_for_function("document.querySelector('[data-fits-image]').naturalWidth === 24")

    # Nothing wider than the screen; the preview has the full width, above the list.
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    preview = page.locator("[data-preview]").bounding_box()
    listing = page.locator(".files-body > .card.flush").bounding_box()
    assert abs(preview["width"] - listing["width"]) < 1 and preview["y"] + preview["height"] <= listing["y"]
    # Close is one line; the title and the row break the name between its parts, not inside them.
    assert page.get_by_role("button", name="Close").evaluate(LINES) == 1
    assert page.evaluate(BROKEN_NAME_PARTS, "[data-preview-title], [data-entries] .entry") == []
    # Header cards stay whole, 80 columns to a line: their box scrolls sideways within the preview.
    card = page.locator("[data-fits-header]").first
    assert card.evaluate("(pre) => getComputedStyle(pre).whiteSpace") == "pre"
    assert card.evaluate("(pre) => pre.scrollWidth > pre.clientWidth")
    assert card.bounding_box()["x"] + card.bounding_box()["width"] <= preview["x"] + preview["width"]
    # Every column of the list is in view: its table does not scroll out of the card.
    assert page.locator(".files-body > .card.flush").evaluate("(card) => card.scrollWidth <= card.clientWidth")
    modified = page.locator("[data-entries] tr").first.locator("td").last.bounding_box()
    assert modified["x"] + modified["width"] <= listing["x"] + listing["width"]
    page.get_by_role("button", name="Close").click()
    expect(page.locator("[data-preview]")).to_be_hidden()
