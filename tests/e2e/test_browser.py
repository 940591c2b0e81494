"""A scientist in Debian's Chromium: log in, start a task from the form, open it, see its page."""

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason="Debian's chromium is installed by scripts/setup.sh --for-tests"
)


@pytest.fixture
def page(tmp_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context()
        context.set_default_timeout(30_000)
        yield context.new_page()
        context.close()
        browser.close()


def test_log_in_start_from_the_form_open_and_see_the_page(platform, page):
    platform.create_user("marie", password="radium and polonium")

    page.goto(f"{platform.url}/tasks/")
    expect(page).to_have_url(f"{platform.url}/login/?next=/tasks/")
    page.get_by_label("Username").fill("marie")
    page.get_by_label("Password").fill("radium and polonium")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/tasks/")

    page.goto(f"{platform.url}/tasks/new/?software=hello")
    page.get_by_label("Name").fill("in-the-browser")
    page.get_by_label("CPUs").fill("0.5")
    page.get_by_label("Memory").fill("128M")
    page.get_by_role("button", name="Start task").click()

    # The task page follows the phase live, without a reload.
    expect(page.locator("h1")).to_contain_text("in-the-browser")
    expect(page.locator("[data-field=phase]")).to_have_text("running", timeout=60_000)

    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open").click()
    task_page = opened.value
    expect(task_page.locator("h1")).to_have_text("Hello from Rosetta")
    # We arrived on the task's own origin, and no token stayed in the URL.
    assert task_page.url.startswith("http://t") and ".localhost:" in task_page.url
    assert task_page.url.endswith(f":{platform.port}/") and "token" not in task_page.url
    # The access cookie belongs to that origin only (host-only, not readable by scripts).
    cookies = {c["name"]: c for c in page.context.cookies(task_page.url)}
    access = cookies["rosetta-task-access"]
    assert access["httpOnly"] and not access["domain"].startswith(".")
    assert "rosetta-task-access" not in {c["name"] for c in page.context.cookies(platform.url)}

    # A bookmark to a page inside the task works too: without the task's cookie the gateway
    # sends the browser through Rosetta (still logged in), which hands it back to that page.
    task_origin = task_page.url.rstrip("/")
    page.context.clear_cookies(name="rosetta-task-access")
    task_page.goto(f"{task_origin}/index.html")
    expect(task_page).to_have_url(f"{task_origin}/index.html")
    expect(task_page.locator("body")).to_contain_text("Hello from Rosetta")
