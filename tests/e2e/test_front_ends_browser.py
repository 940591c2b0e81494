"""Smaller defects a new group met, in Debian's Chromium: tables that broke words (and names
at their hyphens) at 1280 px, staff adding users, stopping another user's task with a reason,
deactivating a user, a resource's partitions offered on the form."""

import re

import httpx
from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.e2e.test_browser_everyday import PHONE, assert_fits, log_in
from tests.e2e.test_http_flow import login

PASSWORD = "a long everyday password"
DESKTOP = {"width": 1280, "height": 900}
LONG_IMAGE = "localhost/rosettatest/" + "spectralreductionpipeline" * 5  # one word of 147 characters

# Every word of the cells that wraps onto two lines: a word's letters on more than one line
# (hyphens and slashes are fair places to break).
BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.textContent.matchAll(/[^\\s\\-\\/,.:()]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set(Array.from(range.getClientRects(), (rect) => Math.round(rect.top)));
        if (lines.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""

# Names (of resources: testbed-docker, annex-host) shown on more than one line.
SPLIT_NAMES = """(selector) => Array.from(document.querySelectorAll(selector)).filter((element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set(Array.from(range.getClientRects(), (rect) => Math.round(rect.top))).size > 1;
}).map((element) => element.textContent.trim())"""


def add_resources(platform, *fields: str) -> None:
    """Resources an operator adds, each given as the Resource's fields in Python."""
    made = "; ".join(f"Resource.objects.create({spec})" for spec in fields)
    platform.rosetta("manage", "shell", "-c", f"from rosetta.computing.models import Resource; {made}")


def disable_resources(platform, *names: str) -> None:
    """Off again: the platform is shared by the other tests, whose tasks start on `local`."""
    platform.rosetta("manage", "shell", "-c", (
        "from rosetta.computing.models import Resource; "
        f"Resource.objects.filter(name__in={list(names)!r}).update(enabled=False)"
    ))  # fmt: skip


def test_tables_do_not_break_words_at_1280_px(platform, page):  # noqa: F811
    token = platform.create_user("wide-staff", password=PASSWORD, admin=True)
    # Hyphenated names beside others, where the tester met "testbed-" / "docker".
    annexes = ("annex-docker", "annex-host", "annex-podman")
    add_resources(platform, *(f"name={name!r}" for name in annexes))
    with platform.api(token) as api:
        made = api.post(
            "/api/resources",
            json={
                "name": "basement-annex",
                "transport": "local",
                "enabled": False,
                "description": "The second machine in the basement, for long runs that must not be disturbed "
                "by anybody else's work, kept for the survey team's reductions until the new cluster arrives.",
            },
        )
        assert made.status_code == 201, made.text
    page.set_viewport_size(DESKTOP)
    log_in(page, platform, "wide-staff")
    try:
        page.goto(f"{platform.url}/catalog/")
        expect(page.locator("table.versions").first).to_be_visible()
        expect(page.locator("table.versions .runs", has_text="annex-podman").first).to_be_visible()
        assert page.evaluate(BROKEN_WORDS, "table.versions th, table.versions td") == []
        assert page.evaluate(SPLIT_NAMES, "table.versions .runs") == []
        page.goto(f"{platform.url}/resources/")
        expect(page.locator("table.table td", has_text="disabled")).to_be_visible()
        assert page.evaluate(BROKEN_WORDS, "table.table th, table.table td") == []
        assert page.evaluate(SPLIT_NAMES, "table.table td.name") == []
    finally:
        disable_resources(platform, *annexes)

    # Free text still breaks where it must: a long image reference in a task's events widens no page.
    image = platform.build_image(LONG_IMAGE, "FROM localhost/rosetta/hello\n")
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "long-image", "image": image}).status_code == 201
        task_id = platform.start_task(api, "long-image")
        platform.wait_for_task(api, task_id, {"running"})
    page.goto(f"{platform.url}/tasks/{task_id}/")
    expect(page.locator("[data-events]")).to_contain_text(LONG_IMAGE)
    assert_fits(page, f"{platform.url}/tasks/{task_id}/")
    page.set_viewport_size(PHONE)
    assert_fits(page, f"{platform.url}/tasks/{task_id}/")
    with platform.api(token) as api:
        api.post(f"/api/tasks/{task_id}/stop")


def test_staff_add_users_and_stop_or_deactivate_with_a_reason(platform, page):  # noqa: F811
    staff = platform.create_user("people-staff", password=PASSWORD, admin=True)
    log_in(page, platform, "people-staff")

    # A new user from the Users page: a password and an API token, each shown once.
    page.goto(f"{platform.url}/users/")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_role("button", name="Add the user").click()
    expect(page.locator("[data-new-user] h2")).to_have_text("newcomer can start now")
    password = page.get_by_label("Password for the web pages", exact=True).input_value()
    token = page.get_by_label("API token for the command line").input_value()
    assert len(password) >= 12 and token.startswith("rst_")
    page.reload()
    expect(page.locator("[data-new-user]")).to_have_count(0)  # shown once
    login(platform, "newcomer", password).close()  # the web login takes it
    with platform.api(token) as api:
        assert api.get("/api/me").json() == {"username": "newcomer", "is_staff": False}
    # A name that exists, or is no user name, is refused at the field.
    page.get_by_label("Username").fill("newcomer")
    page.get_by_role("button", name="Add the user").click()
    expect(page.locator(".field-errors")).to_contain_text("A user called 'newcomer' exists already.")
    page.get_by_label("Username").fill("no spaces please")
    page.get_by_role("button", name="Add the user").click()
    expect(page.locator(".field-errors")).to_contain_text("valid username")
    # Without a password: the API token alone.
    page.get_by_label("Username").fill("script-only")
    page.get_by_label("Make a password for the web pages (shown once)").uncheck()
    page.get_by_role("button", name="Add the user").click()
    expect(page.locator("[data-new-user] h2")).to_have_text("script-only can start now")
    expect(page.get_by_label("Password for the web pages", exact=True)).to_have_count(0)
    expect(page.get_by_label("API token for the command line")).to_have_value(re.compile(r"^rst_"))

    # Stopping another user's task: a page that asks to confirm, and why; the owner reads it.
    with platform.api(token) as api:
        task_id = platform.start_task(api, name="their-run")
        platform.wait_for_task(api, task_id, {"running"})
    page.goto(f"{platform.url}/tasks/")
    page.get_by_role("link", name="Stop newcomer's their-run").click()
    expect(page.locator("h1")).to_have_text("Stop their-run?")
    expect(page.locator(".card")).to_contain_text("This task is newcomer's")
    page.set_viewport_size(PHONE)
    assert_fits(page, page.url)
    page.set_viewport_size(DESKTOP)
    page.get_by_role("button", name="Stop the task").click()  # no reason: the browser asks for one
    expect(page.locator("h1")).to_have_text("Stop their-run?")
    page.get_by_label("Why (the owner sees this on the task)").fill("The disk of this machine is replaced")
    page.get_by_role("button", name="Stop the task").click()
    expect(page).to_have_url(f"{platform.url}/tasks/")
    with platform.api(token) as api:
        stopped = platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    reasons = [event["reason"] for event in stopped["events"]]
    assert "Stop requested by staff (people-staff): The disk of this machine is replaced." in reasons

    # Deactivating a user says it stops their tasks, and does.
    with platform.api(token) as api:
        second = platform.start_task(api, name="second-run")
        platform.wait_for_task(api, second, {"running"})
    page.goto(f"{platform.url}/users/")
    row = page.locator('tr[data-user="newcomer"]')
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Deactivate").click()
    expect(page.locator(".message")).to_have_text(
        "newcomer was deactivated: their logins, tokens and task access end now; 1 active task is being stopped."
    )
    assert asked == [
        "Deactivate newcomer? Their logins, API tokens and task access end at once, and their 1 active task is stopped."
    ]
    refused = httpx.get(f"{platform.url}/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "This account is deactivated" in refused.json()["detail"]
    page.locator('tr[data-user="newcomer"]').get_by_role("button", name="Reactivate").click()
    expect(page.locator(".message")).to_contain_text("newcomer was reactivated")
    with platform.api(staff) as api:
        ended = platform.wait_for_task(api, second, {"stopped"}, timeout=60)
    assert "Stopped because the account was deactivated by staff." in [event["reason"] for event in ended["events"]]
    # Reactivated, newcomer has none of the old tokens (they make new ones).
    revoked = httpx.get(f"{platform.url}/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and "invalid, expired or revoked" in revoked.json()["detail"]


def test_the_form_offers_a_resources_known_partitions(platform, page):  # noqa: F811
    partitions = [
        {"name": "debug", "default": True, "max_minutes": 60, "cpus_per_node": 2, "memory_mb_per_node": 4096},
        {"name": "long", "default": False, "max_minutes": 1440, "cpus_per_node": 2, "memory_mb_per_node": 4096},
    ]
    # Clusters reached as each user's own account: nothing runs there until someone starts a task.
    cluster = "transport='ssh', credentials='user', scheduler='slurm'"
    add_resources(
        platform,
        f"name='annex-cluster', {cluster}, facts={{'partitions': {partitions!r}}}",
        f"name='annex-unchecked', {cluster}",  # never checked: its partitions are not known
    )
    platform.create_user("partitioner", password=PASSWORD)
    log_in(page, platform, "partitioner")
    try:
        page.goto(f"{platform.url}/tasks/new/?software=hello")
        resource, partition = page.get_by_label("Resource"), page.get_by_label("Partition")
        resource.select_option("annex-cluster")
        expect(partition.locator("option")).to_have_text(["debug (default)", "long"])
        expect(partition).to_have_value("debug")
        partition.select_option("long")
        resource.select_option("annex-unchecked")
        expect(page.get_by_role("textbox", name="Partition")).to_have_value("")
        resource.select_option("local")
        expect(page.locator("[data-batch-fields]")).to_be_hidden()
        resource.select_option("annex-cluster")
        expect(partition).to_have_value("debug")

        # The server still checks the partition's limits; the page comes back with the choice kept.
        partition.select_option("long")
        page.get_by_label("Time limit").fill("2d")
        page.get_by_role("button", name="Start task").click()
        expect(page.locator(".field:has(#id_time_limit) .field-errors")).to_have_text(
            "At most 1440 minutes in partition long of annex-cluster."
        )
        expect(partition).to_have_value("long")
        expect(partition.locator("option")).to_have_text(["debug (default)", "long"])
    finally:
        disable_resources(platform, "annex-cluster", "annex-unchecked")
