"""A scientist in Debian's Chromium pastes a Containerfile, watches it build live, finds the
new entry in the catalogue and starts it from there."""

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401 (fixture and skip rule)

# One RUN step: its output arrives while the build runs, on the build's own fenced network.
CONTAINERFILE = """\
FROM localhost/rosetta/hello
RUN echo "building on $(ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*')"; sleep 1; echo step-done
ENV MADE_IN=browser
"""
WIDEST_IN_MAIN = """Math.max(...[...document.querySelectorAll("main *:not(.scroll-x *)")]
    .map((element) => element.getBoundingClientRect().right))"""


def test_build_from_the_page_with_its_log_live(platform, page):  # noqa: F811
    platform.create_user("grace", password="compilers and cobol")
    page.goto(f"{platform.url}/login/?next=/catalog/new/")
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill("compilers and cobol")
    page.get_by_role("button", name="Log in").click()

    page.locator("#id_build-name").fill("webtool")
    page.locator("#id_build-version").fill("0.1")
    page.locator("#id_build-containerfile").fill(CONTAINERFILE)
    page.locator("#id_build-description").fill("Made in the browser.")
    page.locator("#id_build-honours_base_port").check()
    page.get_by_role("button", name="Build").click()

    expect(page).to_have_url(re.compile(r"/catalog/builds/\d+/$"))
    build_url = page.url
    log = page.locator("[data-build-log]")
    assert log.get_attribute("data-final") == ""  # the page came before the end: what follows is live
    expect(page.locator("[data-build-state]")).to_have_text("succeeded", timeout=180_000)
    expect(log).to_contain_text("step-done")
    expect(log).to_contain_text("Added webtool:0.1")
    # RUN steps run on a network of their own from the task pool, which the task firewall fences in.
    expect(log).to_contain_text(re.compile(r"building on inet 10\.123\.\d+\.\d+"))

    page.locator("[data-build-entry]").click()
    expect(page.locator("h1")).to_contain_text("webtool")
    entry_page = page.url
    expect(page.locator("[data-digest]")).to_contain_text("sha256:")

    page.goto(f"{platform.url}/catalog/?q=browser")
    card = page.locator('[data-software="webtool"]')
    expect(card).to_contain_text("Made in the browser.")
    card.get_by_role("link", name="Start webtool:0.1").click()
    expect(page.get_by_label("Software")).to_have_value(re.compile(r"^\d+$"))
    expect(page.locator("#id_software option:checked")).to_have_text("webtool 0.1")

    # The catalogue's pages fit a phone's width (wide tables scroll inside their card).
    page.set_viewport_size({"width": 375, "height": 740})
    for path in ("/catalog/", "/catalog/new/", build_url, entry_page):
        page.goto(path if path.startswith("http") else platform.url + path)
        assert page.evaluate(WIDEST_IN_MAIN) <= 375, path
