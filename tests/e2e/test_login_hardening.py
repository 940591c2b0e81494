"""The login form under abuse, through the gateway of a real platform: failed logins are
limited per account and per client address, anonymous visits leave nothing in the database,
passwords have a minimum length, and cookies are Secure and host-only over https."""

import re
import sqlite3
from contextlib import closing

import httpx
import pytest

from tests.instance import Platform

PASSWORD = "a long enough password"
FORM_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(scope="module")
def own_platform(tmp_path_factory):
    """A platform of this module's own: its limits count this client's address, which the
    other tests' platform must not see used up."""
    platform = Platform(tmp_path_factory.mktemp("rosetta"))
    platform.set_up()
    platform.start()
    yield platform
    platform.stop()


def sessions(platform: Platform) -> int:
    with closing(sqlite3.connect(platform.home / "rosetta.sqlite3")) as database:
        return database.execute("SELECT COUNT(*) FROM django_session").fetchone()[0]


def try_login(browser: httpx.Client, username: str, password: str, **headers: str) -> httpx.Response:
    token = FORM_TOKEN.search(browser.get("/login/").text).group(1)
    return browser.post(
        "/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token}, headers=headers
    )


def test_anonymous_visits_create_no_session_and_login_still_works(own_platform):
    platform = own_platform
    platform.create_user("hedy", password=PASSWORD)
    before = sessions(platform)
    with httpx.Client(base_url=platform.url, timeout=30) as anonymous:
        for path in ("/", "/login/", "/login/?next=/tasks/", "/tasks/", "/catalog/", "/api/docs", "/api/tasks"):
            assert anonymous.get(path).status_code in (200, 302, 401), path
        assert anonymous.post("/login/", data={"username": "x", "password": "y"}).status_code == 403  # no CSRF
    assert sessions(platform) == before

    with httpx.Client(base_url=platform.url, timeout=30) as browser:
        form = browser.get("/login/")
        assert "rosetta_session" not in form.headers.get("set-cookie", "")
        cookie = form.headers["set-cookie"]  # the anonymous CSRF secret: host-only, not for scripts
        assert cookie.startswith("rosetta_csrf=") and "HttpOnly" in cookie and "Domain" not in cookie
        # A task's origin is another origin: a login form posted from there is refused.
        foreign = browser.post(
            "/login/",
            data={"username": "hedy", "password": PASSWORD, "csrfmiddlewaretoken": FORM_TOKEN.search(form.text)[1]},
            headers={"Origin": f"http://t1.localhost:{platform.port}"},
        )
        assert foreign.status_code == 403
        assert sessions(platform) == before

        assert try_login(browser, "hedy", PASSWORD).status_code == 302
        assert sessions(platform) == before + 1
        page = browser.get("/tasks/")
        assert page.status_code == 200 and "hedy" in page.text
        # Signed in, forms carry the session's secret: the page's own forms work.
        token = FORM_TOKEN.search(page.text).group(1)
        assert (
            browser.post(
                "/account/tokens/", data={"name": "laptop", "scopes": "read", "csrfmiddlewaretoken": token}
            ).status_code
            == 302
        )
        assert browser.post("/logout/", data={"csrfmiddlewaretoken": token}).status_code == 302
    assert sessions(platform) == before


def test_failed_logins_are_limited_per_account_then_per_address(own_platform):
    platform = own_platform
    platform.create_user("ada", password=PASSWORD)
    platform.create_user("grace", password=PASSWORD)
    with httpx.Client(base_url=platform.url, timeout=30) as browser:
        for _ in range(10):
            wrong = try_login(browser, "ada", "not her password")
            assert wrong.status_code == 200 and "Please enter a correct username and password" in wrong.text
        blocked = try_login(browser, "ada", PASSWORD)  # even the right password, now
        assert blocked.status_code == 429, blocked.text
        assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
        assert "Too many failed logins" in blocked.text and "try again in 15 minutes" in blocked.text
        assert "rosetta_session" not in blocked.headers.get("set-cookie", "")

        # Another account, from the same address, is not held up by ada's attacker...
        assert try_login(browser, "grace", PASSWORD).status_code == 302
        browser.cookies.clear()
        # ... until the address itself has failed too often, whatever names it tries.
        for attempt in range(20):
            assert try_login(browser, f"guess-{attempt}", "password123").status_code == 200
        assert try_login(browser, "grace", PASSWORD).status_code == 429
        # The gateway names the client; a header the client sends changes nothing.
        assert try_login(browser, "grace", PASSWORD, **{"X-Forwarded-For": "192.0.2.7"}).status_code == 429


def test_passwords_have_a_minimum_length(own_platform):
    platform = own_platform
    short = platform.rosetta("users", "create", "shorty", "--password-stdin", input="eleven-char\n", check=False)
    assert short.returncode == 1, short.stdout
    assert "This password is too short. It must contain at least 12 characters." in short.stderr
    assert "Traceback" not in short.stderr and "eleven-char" not in short.stdout + short.stderr
    # Nothing was created: the name is still free.
    assert platform.create_user("shorty", password="twelve-chars").startswith("rst_")


def test_cookies_are_secure_and_host_only_over_https(tmp_path):
    platform = Platform(tmp_path)
    platform.settings["ROSETTA_PUBLIC_URL"] = f"https://localhost:{platform.port}"  # TLS ends in front of the gateway
    platform.set_up()
    platform.create_user("lise", password=PASSWORD)
    platform.start()
    try:
        https = {"Origin": f"https://localhost:{platform.port}"}
        with httpx.Client(base_url=platform.url, timeout=30) as browser:
            form = browser.get("/login/")
            assert form.headers["strict-transport-security"] == "max-age=31536000"
            csrf = form.headers["set-cookie"]
            assert csrf.startswith("__Host-rosetta_csrf=") and "Secure" in csrf and "Domain" not in csrf
            secret = csrf.split(";")[0].split("=", 1)[1]
            token = FORM_TOKEN.search(form.text).group(1)
            login = browser.post(
                "/login/",
                data={"username": "lise", "password": PASSWORD, "csrfmiddlewaretoken": token},
                headers={**https, "Cookie": f"__Host-rosetta_csrf={secret}"},  # httpx keeps Secure cookies for https
            )
            assert login.status_code == 302, login.text
            session = [c for c in login.headers.get_list("set-cookie") if c.startswith("__Host-rosetta_session=")]
            assert len(session) == 1 and "Secure" in session[0] and "HttpOnly" in session[0]
            assert "Domain" not in session[0] and "Path=/" in session[0]
    finally:
        platform.stop()
