"""A long task list in Debian's Chromium: the running task on top of the first page, older finished
ones a page at a time behind a link, and the first page still following the task as it stops."""

from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.e2e.test_browser_everyday import PASSWORD, PHONE, assert_fits, log_in

FINISHED = 120


def test_a_long_list_pages_and_keeps_following_its_tasks(fresh_platform, page):  # noqa: F811
    platform = fresh_platform
    platform.start()
    token = platform.create_user("lise", password=PASSWORD)
    platform.make_finished_tasks("lise", FINISHED)
    with platform.api(token) as api:
        running = platform.start_task(api, name="on-top", cpus=0.1, memory_mb=64)
        platform.wait_for_task(api, running, {"running"})
        log_in(page, platform, "lise")
        page.get_by_role("link", name="All", exact=True).click()
        rows = page.locator("tr[data-task-id]")
        expect(rows).to_have_count(1 + 50)
        expect(rows.first).to_have_attribute("data-task-id", running)
        expect(page.get_by_role("link", name="← Newest")).to_have_count(0)

        # The page follows its tasks through the API's pages: the stop shows without a reload.
        assert api.post(f"/api/tasks/{running}/stop").status_code == 202
        expect(rows.first).to_have_attribute("data-phase", "stopped", timeout=30_000)
        expect(rows).to_have_count(50)  # the newest 50 finished now, the stopped one first
        expect(rows.first).to_have_attribute("data-task-id", running)

    # Older pages: the rest, once each, with the way back to the newest.
    seen = set(rows.evaluate_all("rows => rows.map(row => row.dataset.taskId)"))
    for expected in (50, FINISHED + 1 - 100):
        page.get_by_role("link", name="Older tasks →").click()
        expect(rows).to_have_count(expected)
        expect(page.get_by_role("link", name="← Newest")).to_be_visible()
        shown = set(rows.evaluate_all("rows => rows.map(row => row.dataset.taskId)"))
        assert not shown & seen
        seen |= shown
    expect(page.get_by_role("link", name="Older tasks →")).to_have_count(0)
    assert len(seen) == FINISHED + 1
    page.set_viewport_size(PHONE)
    assert_fits(page, page.url)
    page.get_by_role("link", name="← Newest").click()
    expect(rows.first).to_have_attribute("data-task-id", running)
