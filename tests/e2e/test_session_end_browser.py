"""Pages left open when the session ends, in Debian's Chromium: logged out in another tab, or
the account deactivated. They stop asking the API (each refusal is a line in the server's log),
say plainly what happened, and link to the login, which leads back."""

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.e2e.test_browser_everyday import PASSWORD, log_in

SAID = "You are no longer logged in (you logged out, or your account was deactivated)"
QUIET = 5000  # ms watched after the notice: a page still polling asks 3 times in it (every 1.5 s)


def refusals(platform, path: str) -> int:
    """How many times the server logged a request to ``path`` it refused for want of a login."""
    return sum(f"Unauthorized: {path}" in line for line in (platform.home / "run.log").read_text().splitlines())


def test_open_pages_stop_polling_and_say_the_session_ended(platform, page):  # noqa: F811
    token = platform.create_user("emmy", password=PASSWORD)
    # An interface that never answers: the task stays `starting`, which its page follows closely.
    image = platform.build_image(
        "localhost/rosetta-test/silent-web", 'FROM localhost/rosetta/hello\nCMD ["sleep", "600"]\n'
    )
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "silent-web", "image": image}).status_code == 201
        task_id = platform.start_task(api, "silent-web", name="quiet")
        platform.wait_for_task(api, task_id, {"starting"})
    log_in(page, platform, "emmy")
    page.goto(f"{platform.url}/tasks/{task_id}/")
    expect(page.locator('h1 [data-field="phase"]')).to_have_text("starting")
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/api/" in request.url else None)

    # Logged out in another tab: the task page says so at once, and stops.
    other = page.context.new_page()
    other.goto(f"{platform.url}/tasks/")
    other.get_by_role("button", name="Log out").click()
    expect(other.locator(".message")).to_have_text("You are logged out.")
    other.close()
    notice = page.get_by_role("alert").filter(has_text=SAID)
    expect(notice).to_be_visible()
    assert notice.evaluate("(notice) => notice.getBoundingClientRect().top >= 0")  # in view, at the top
    seen = len(asked)
    page.wait_for_timeout(QUIET)
    assert asked[seen:] == []
    assert refusals(platform, f"/api/tasks/{task_id}") == 1

    # Its link leads back to the task, logged in again; the page follows the task again.
    notice.get_by_role("link", name="Log in again").click()
    page.get_by_label("Username").fill("emmy")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/tasks/{task_id}/")
    expect(page.get_by_role("alert").filter(has_text=SAID)).to_have_count(0)

    # Deactivated by staff: the task list and the file manager, open in two tabs, say so too.
    page.goto(f"{platform.url}/tasks/")
    expect(page.locator(f'tr[data-task-id="{task_id}"]')).to_be_visible()
    files = page.context.new_page()
    files.goto(f"{platform.url}/files/home/")
    expect(files.locator("[data-entries]")).to_contain_text("This folder is empty.")
    listed = refusals(platform, "/api/tasks")
    platform.rosetta("users", "deactivate", "emmy")
    expect(page.get_by_role("alert").filter(has_text=SAID)).to_be_visible()
    seen = len(asked)
    page.wait_for_timeout(QUIET)
    assert asked[seen:] == []
    assert refusals(platform, "/api/tasks") == listed + 1
    files.get_by_role("button", name="New folder").click()
    files.keyboard.type("after")
    files.keyboard.press("Enter")
    expect(files.get_by_role("alert").filter(has_text=SAID)).to_be_visible()
    link = files.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", re.compile(r"^/login/\?next=%2Ffiles%2Fhome%2F$"))
    platform.rosetta("users", "reactivate", "emmy")
