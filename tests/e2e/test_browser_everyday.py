"""Everyday use in Debian's Chromium: a failure said plainly and relaunched in one click, a
task list that stays usable, the gateway's own pages, and every page at phone width."""

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)

PASSWORD = "a long everyday password"
PHONE = {"width": 375, "height": 740}


def log_in(page, platform, name):  # noqa: F811
    page.goto(f"{platform.url}/login/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/tasks/")


def assert_fits(page, url):  # noqa: F811
    page.goto(url)
    page.wait_for_load_state("load")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{url} is {overflow} px wider than the phone's screen"


def test_failure_relaunch_list_gateway_pages_and_phone_width(platform, page):  # noqa: F811
    token = platform.create_user("chien-shiung", password=PASSWORD)
    image = platform.build_image(
        "localhost/rosetta-test/exit3-web",
        'FROM localhost/rosetta/hello\nCMD ["/bin/sh", "-c", "echo working; sleep 0.5; exit 3"]\n',
    )
    with platform.api(token) as api:
        made = api.post("/api/software", json={"name": "exit3-web", "image": image, "description": "Fails on purpose."})
        assert made.status_code == 201, made.text
    log_in(page, platform, "chien-shiung")

    # The form: the software's description, limits beside the fields, memory as 512M / 2G.
    page.goto(f"{platform.url}/tasks/new/?software=exit3-web")
    expect(page.locator("[data-software-description]")).to_have_text("Fails on purpose.")
    memory_help = page.locator(".field:has(#id_memory_mb) .help")
    expect(memory_help).to_contain_text(re.compile(r"from 16M up to \d+[MG] on local"))
    page.get_by_label("Name").fill("crash")
    page.get_by_label("Memory").fill("lots")
    page.get_by_label("CPUs").fill("99")
    page.get_by_role("button", name="Start task").click()
    # Every error at its field, in one round.
    expect(page.locator(".field:has(#id_memory_mb) .field-errors")).to_contain_text("is not a memory size")
    expect(page.locator(".field:has(#id_cpus) .field-errors")).to_contain_text("At most")
    page.get_by_label("Memory").fill("256M")
    page.get_by_label("CPUs").fill("0.5")
    page.get_by_role("button", name="Start task").click()

    # The failure, said prominently, and not like a clean end; Relaunch right there.
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This task ended with an error", timeout=90_000)
    expect(alert).to_contain_text("The program exited with code 3.")
    badge = page.locator('h1 [data-field="phase"]')
    expect(badge).to_have_text("exited (3)")
    expect(badge).to_have_class(re.compile("phase-failed"))
    first_url = page.url
    page.get_by_role("button", name="Relaunch").click()
    expect(page).not_to_have_url(first_url)
    expect(page.locator("h1")).to_contain_text("crash")
    expect(page.get_by_role("alert")).to_contain_text("exited with code 3", timeout=90_000)
    # The last values used are remembered.
    page.goto(f"{platform.url}/tasks/new/")
    expect(page.get_by_label("Memory")).to_have_value("256M")

    # The list: active by default; finished ones with why and how long ago, and their actions.
    page.goto(f"{platform.url}/tasks/")
    expect(page.locator(".empty")).to_contain_text("No active tasks")
    page.get_by_role("link", name="Finished", exact=True).click()
    rows = page.locator("tr[data-task-id]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("The program exited with code 3.")
    expect(rows.first.locator("time")).to_have_text(re.compile(r"^exited \(3\) \d+ (s|min) ago$"))
    expect(rows.first.get_by_role("button", name="Relaunch")).to_be_visible()

    # Opening a finished task says so, and offers Relaunch; so does the gateway, to a script.
    finished_id = rows.first.get_attribute("data-task-id")
    assert page.goto(f"http://{finished_id}.localhost:{platform.port}/").status == 409
    expect(page.locator("h1")).to_have_text("crash is not running")
    expect(page.get_by_role("button", name="Relaunch")).to_be_visible()
    with platform.task_client(finished_id, token) as script:
        gone = script.get("/", headers={"Accept": "text/html"})
    assert gone.status_code == 503 and "<h1>crash is exited</h1>" in gone.text and "<header>" in gone.text
    assert f'href="{platform.url}/tasks/{finished_id}/">See the task in Rosetta' in gone.text
    # The gateway's own "not found": Rosetta's look, and the way back.
    missing = page.goto(f"http://tnosuchtask.localhost:{platform.port}/")
    assert missing.status == 404
    expect(page.locator("header")).to_have_text("Rosetta")
    expect(page.get_by_role("link", name="Your tasks")).to_have_attribute("href", f"{platform.url}/tasks/")

    # At 375 px no page is wider than the screen.
    page.set_viewport_size(PHONE)
    for path in (
        "/tasks/",
        "/tasks/?show=all",
        f"/tasks/{finished_id}/",
        "/tasks/new/",
        "/catalog/",
        "/resources/",
        "/account/",
        "/resources/no-such-resource/",  # Rosetta's own "not found"
    ):
        assert_fits(page, platform.url + path)
    assert_fits(page, f"http://tnosuchtask.localhost:{platform.port}/")

    # Bulk delete of finished tasks, after a confirmation.
    page.goto(f"{platform.url}/tasks/?show=finished")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete 2 finished tasks").click()
    expect(page.locator(".message")).to_have_text("Deleted 2 finished tasks.")

    # Logging out is said; staff pages and the API docs fit the phone too.
    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".message")).to_have_text("You are logged out.")
    platform.create_user("staff-everyday", password=PASSWORD, admin=True)
    log_in(page, platform, "staff-everyday")
    for path in ("/users/", "/resources/new/", "/tasks/?show=all", "/api/docs"):
        assert_fits(page, platform.url + path)
    expect(page.get_by_role("link", name="Back to your tasks")).to_be_visible()
