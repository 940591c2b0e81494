"""The institutional login's round trip in Debian's Chromium, beside the password login, in one run:
from the click on the login page's button to the task list shown, through the test bed's OpenID
Connect provider (its login form filled in: username, password, "Sign in"; PKCE, the code exchanged,
the ID token checked, the user's groups synced) — and the same for a password login on the same
platform. Each leg ends at the page's load event (waiting on events, not polling). Each round in
a fresh browser context (no cookies), median of ``--rounds``; prints both
and the ratio. Target: the provider's round trip ≤ 1.5 s. Needs the test bed up (testbed/up).
Never gates CI.

    .venv/bin/python benchmarks/oidc_login.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from playwright.sync_api import expect, sync_playwright
from support import own_platform

from tests import oidc_provider as idp
from tests.e2e.test_browser import CHROMIUM, FLAGS

TARGET_SECONDS = 1.5
PASSWORD = "a password for the benchmark"


def password_login(page, platform) -> float:
    page.goto(f"{platform.url}/login/")
    page.get_by_label("Username").fill("benchmark")
    page.get_by_label("Password").fill(PASSWORD)
    began = time.perf_counter()
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url(f"{platform.url}/tasks/", wait_until="load")
    return time.perf_counter() - began


LEGS: dict[str, list[float]] = {"to the provider's form": [], "form to task list": []}


def provider_login(page, platform, person: dict) -> float:
    page.goto(f"{platform.url}/login/")
    began = time.perf_counter()
    page.get_by_role("link", name=idp.LOGIN_BUTTON).click()
    page.wait_for_url(re.compile(r"/interaction/"), wait_until="load")
    at_provider = time.perf_counter()
    page.get_by_label("Username").fill(person["name"])
    page.get_by_label("Password").fill(person["password"])
    submitted = time.perf_counter()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{platform.url}/tasks/", wait_until="load")
    ended = time.perf_counter()
    LEGS["to the provider's form"].append(at_provider - began)
    LEGS["form to task list"].append(ended - submitted)
    return ended - began


def rounds(browser, count: int, login) -> list[float]:
    times = []
    for _ in range(count + 1):  # the first warms the platform's and the provider's caches: not counted
        context = browser.new_context()
        context.set_default_timeout(30_000)
        page = context.new_page()
        times.append(login(page))
        expect(page.locator("h1")).to_contain_text("Tasks")  # the task list, not an error page
        context.close()
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    oidc = idp.description()
    person = idp.user(oidc, "grace")
    with own_platform(ROSETTA_TESTBED_DIR=str(idp.testbed_dir())) as platform:
        platform.create_user("benchmark", password=PASSWORD)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            local = rounds(browser, args.rounds, lambda page: password_login(page, platform))
            institutional = rounds(browser, args.rounds, lambda page: provider_login(page, platform, person))
            browser.close()
    local_median, provider_median = statistics.median(local), statistics.median(institutional)
    print(f"Login round trip in Chromium, click to task list, median of {args.rounds} (fresh browser each):")
    for name, times in (("password login", local), ("OpenID Connect login", institutional)):
        median, low, high = (1000 * value for value in (statistics.median(times), min(times), max(times)))
        print(f"  {name:21} {median:7.0f} ms   (min {low:.0f}, max {high:.0f})")
    print(f"  ratio OIDC/password   {provider_median / local_median:7.2f}×")
    for leg, times in LEGS.items():  # (the warming round included)
        print(f"    {leg:30} {1000 * statistics.median(times):7.0f} ms")
    verdict = "within" if provider_median <= TARGET_SECONDS else "OVER"
    print(f"  target ≤ {TARGET_SECONDS:.1f} s for the OpenID Connect login: {verdict}")


if __name__ == "__main__":
    main()
