"""Institutional login through the test bed's OpenID Connect provider (testbed/up starts it), in
Debian's Chromium and over plain HTTP: users created on first login with their groups and staff
rights from the provider, kept in sync at each login; logout ending both sessions; password login
turned off; external platforms calling the API with the provider's access tokens (JWT or
introspected), within their scopes, never into a task's interface; CORS on /api/ only."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import expect

from tests import oidc_provider as idp
from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.instance import Platform

ORIGIN = "http://science-portal.localhost:5173"  # an external platform's web app, allowed by CORS


@pytest.fixture(scope="module")
def oidc():
    return idp.description()


def _platform(home, **settings) -> Platform:
    """A Rosetta set up with the test bed up: `rosetta setup` configures the login from testbed.json."""
    instance = Platform(home, settings={"ROSETTA_TESTBED_DIR": str(idp.testbed_dir()), **settings})
    instance.home.mkdir(parents=True, exist_ok=True)
    said = instance.rosetta("setup").stdout
    assert "Institutional login: the test bed's OpenID Connect provider at http://127.0.0.1:" in said, said
    instance.start()
    return instance


@pytest.fixture(scope="module")
def institute(tmp_path_factory, oidc):
    """A platform whose users log in through the test bed's provider, with a web app allowed by CORS."""
    instance = _platform(tmp_path_factory.mktemp("institute"), ROSETTA_CORS_ORIGINS=ORIGIN)
    yield instance
    instance.stop()


def account(platform: Platform, name: str) -> dict:
    """What the platform knows of a user, as an operator would look it up."""
    code = (
        "import json; from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(username={name!r}); "
        "print(json.dumps({'groups': sorted(u.groups.values_list('name', flat=True)), 'staff': u.is_staff, "
        "'links': list(u.external_identities.values_list('subject', flat=True)), "
        "'password': u.has_usable_password()}))"
    )
    return json.loads(platform.rosetta("manage", "shell", "-c", code).stdout.strip().splitlines()[-1])


def change_account(platform: Platform, name: str, statement: str) -> None:
    code = (
        "from django.contrib.auth import get_user_model; from django.contrib.auth.models import Group; "
        f"u = get_user_model().objects.get(username={name!r}); {statement}"
    )
    platform.rosetta("manage", "shell", "-c", code)


def log_in(page, platform: Platform, person: dict) -> None:  # noqa: F811
    page.goto(f"{platform.url}/login/")
    page.get_by_role("link", name=idp.LOGIN_BUTTON).click()
    page.get_by_label("Username").fill(person["name"])
    page.get_by_label("Password").fill(person["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{platform.url}/tasks/")


def log_out(page, platform: Platform) -> None:  # noqa: F811
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{platform.url}/login/")
    expect(page.locator(".message")).to_have_text("You are logged out.")


def test_login_in_the_browser_syncs_groups_and_staff_and_logout_ends_both_sessions(institute, oidc, page):  # noqa: F811
    ada, grace = idp.user(oidc, "ada"), idp.user(oidc, "grace")
    log_in(page, institute, ada)
    expect(page.locator(".username")).to_contain_text("ada")
    expect(page.locator(".username .tag")).to_have_text("staff")  # ada is in the provider's staff group
    assert account(institute, "ada") == {
        "groups": ["astronomers", "rosetta-staff"], "staff": True, "links": ["ada"], "password": False,
    }  # fmt: skip

    # An operator put ada in another group meanwhile; the provider does not list it: gone at the next login.
    change_account(institute, "ada", "u.groups.add(Group.objects.get_or_create(name='visitors')[0])")
    log_out(page, institute)
    expect(page.get_by_role("link", name=idp.LOGIN_BUTTON)).to_be_visible()
    page.goto(f"{institute.url}/tasks/")
    expect(page).to_have_url(f"{institute.url}/login/?next=/tasks/")  # the platform's session ended
    # ... and so did the provider's: its login form is asked for again.
    page.get_by_role("link", name=idp.LOGIN_BUTTON).click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(ada["name"])
    page.get_by_label("Password").fill(ada["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{institute.url}/tasks/")  # back to where the login began
    assert account(institute, "ada")["groups"] == ["astronomers", "rosetta-staff"]

    # Staff given on the platform to a user outside the staff group is taken away at their next login.
    log_out(page, institute)
    log_in(page, institute, grace)
    expect(page.locator(".username .tag")).to_have_count(0)
    change_account(institute, "grace", "u.is_staff = True; u.save()")
    log_out(page, institute)
    log_in(page, institute, grace)
    expect(page.locator(".username .tag")).to_have_count(0)
    assert account(institute, "grace") == {
        "groups": ["astronomers"], "staff": False, "links": ["grace"], "password": False
    }  # fmt: skip


def test_a_local_account_of_the_same_name_is_linked_only_by_an_operator(institute, oidc):
    hedy = idp.user(oidc, "hedy")
    institute.create_user("hedy", password="a local password for hedy")
    browser, answer = idp.log_in_over_http(institute, hedy)
    assert answer.status_code == 403
    assert "An account named &#x27;hedy&#x27; already exists on this platform and is not linked" in answer.text
    assert "rosetta users link hedy --subject hedy" in answer.text
    assert browser.get("/tasks/", follow_redirects=False).status_code == 302  # not logged in

    said = institute.rosetta("users", "link", "hedy", "--subject", "hedy").stdout
    assert "hedy now logs in as 'hedy' at http://127.0.0.1:" in said
    browser, answer = idp.log_in_over_http(institute, hedy)
    assert answer.status_code == 302 and answer.headers["location"] == "/tasks/", answer.text
    assert browser.get("/api/me").json() == {"username": "hedy", "is_staff": False}
    assert account(institute, "hedy")["password"]  # the same account: its password still works too

    other = institute.rosetta("users", "link", "admin", "--subject", "hedy", check=False)
    assert other.returncode != 0 and "linked to 'hedy' already" in other.stderr


def test_an_external_platform_starts_a_task_that_opens_only_after_the_users_own_login(institute, oidc, page):  # noqa: F811
    katherine = idp.user(oidc, "katherine")  # has never logged in to the platform
    app = idp.external_client(oidc, "jwt")
    token = idp.access_token(oidc, app, katherine, "openid read tasks", redirect_port=5173)["access_token"]
    with httpx.Client(base_url=institute.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert api.get("/api/me").json() == {"username": "katherine", "is_staff": False}
        # Her groups came from the provider with her first call; the catalogue shows by group.
        with institute.api(institute.create_user("curator", admin=True)) as curator:
            shared = {"name": "astro-hello", "image": "localhost/rosetta/hello", "visibility": "group",
                      "group": "astronomers"}  # fmt: skip
            assert curator.post("/api/software", json=shared).status_code == 201
        names = [software["name"] for software in api.get("/api/software").raise_for_status().json()]
        assert {"hello", "astro-hello"} <= set(names)
        task_id = institute.start_task(api, "hello", name="from-the-portal")
        task = institute.wait_for_task(api, task_id, {"running"})
        assert account(institute, "katherine")["groups"] == ["astronomers"]
        refused = api.post("/api/software", json={"name": "mine", "image": "localhost/rosetta/hello"})
        assert refused.status_code == 403 and "scope" in refused.json()["detail"]

    # The external app's token never opens the task's interface...
    with institute.task_client(task_id, token) as interface:
        opened = interface.get("/", follow_redirects=False)
        assert opened.status_code in (302, 303, 401, 403), opened.text
        assert "Hello from Rosetta" not in opened.text
    # ... its user's own login does.
    log_in(page, institute, katherine)
    page.goto(task["interface_url"])
    expect(page.locator("h1")).to_have_text("Hello from Rosetta")
    with httpx.Client(base_url=institute.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202


def test_scopes_of_provider_tokens(institute, oidc):
    ada, grace = idp.user(oidc, "ada"), idp.user(oidc, "grace")
    app = idp.external_client(oidc, "jwt")

    def client(person, scope):
        token = idp.access_token(oidc, app, person, scope, redirect_port=5173)["access_token"]
        return httpx.Client(base_url=institute.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    with client(grace, "openid") as reader:  # no scope of the platform's: read only
        assert reader.get("/api/tasks").status_code == 200
        refused = reader.post("/api/tasks", json={"software": "hello", "resource": "local"})
        assert refused.status_code == 403 and "'tasks' scope" in refused.json()["detail"]
    with client(grace, "openid read tasks") as runner:  # never made into a lasting credential of the platform
        minted = runner.post("/api/tokens", json={"name": "from-provider", "scopes": ["tasks"]})
        assert minted.status_code == 403 and "log in to Rosetta" in minted.json()["detail"]
        key = runner.post("/api/me/keys", json={"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA x"})
        assert key.status_code == 403
        assert runner.get("/api/tokens").status_code == 200  # reading is fine
    with client(grace, "openid read admin") as grace_api:  # admin means nothing for a user who is not staff
        assert grace_api.get("/api/me").json() == {"username": "grace", "is_staff": False}
    with client(ada, "openid read") as ada_api:  # staff act as staff only when they asked for admin
        assert ada_api.get("/api/me").json() == {"username": "ada", "is_staff": False}
    with client(ada, "openid read admin") as ada_admin:
        assert ada_admin.get("/api/me").json() == {"username": "ada", "is_staff": True}


def test_tokens_not_meant_for_this_platform_are_refused_with_the_reason(institute, oidc):
    grace = idp.user(oidc, "grace")
    answers = {
        "forged": idp.forged(oidc, idp.api_claims(oidc, "grace")),
        "expired": idp.provider_signed(oidc, idp.api_claims(oidc, "grace", exp=1_700_000_000, iat=1_699_999_000)),
        "audience": idp.provider_signed(oidc, idp.api_claims(oidc, "grace", aud="urn:another:platform")),
        "issuer": idp.provider_signed(oidc, idp.api_claims(oidc, "grace", iss="http://127.0.0.1:1/elsewhere")),
        "id token": idp.access_token(oidc, idp.external_client(oidc), grace, "openid", 5173)["id_token"],
        "garbage": "not-a-token",
        "revoked API token": "rst_" + "x" * 43,  # one of this platform's own: said so, never sent to the provider
    }
    expected = {
        "forged": "signature does not match the identity provider's keys",
        "expired": "The identity provider's token has expired",
        "audience": "The token was not issued for this platform (its audience is 'urn:another:platform'",
        "issuer": "The token was not issued by this platform's identity provider",
        "id token": "not issued for this platform (its audience is 'external-app'",  # an ID token names its client
        "garbage": "neither an API token of this platform nor a JWT of its identity provider",
        "revoked API token": "This API token is invalid, expired or revoked. Create a new one on your Account page",
    }
    for kind, token in answers.items():
        answer = httpx.get(f"{institute.url}/api/tasks", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (kind, answer.text)
        assert expected[kind] in answer.json()["detail"], (kind, answer.json())


def test_cors_preflight_is_answered_under_api_only(institute):
    asked = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    api = httpx.options(f"{institute.url}/api/tasks", headers=asked)
    assert api.status_code == 200
    assert api.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in api.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in api.headers  # bearer tokens, never cookies
    page_answer = httpx.options(f"{institute.url}/tasks/", headers=asked)
    assert "access-control-allow-origin" not in page_answer.headers
    stranger = httpx.options(f"{institute.url}/api/tasks", headers={**asked, "Origin": "http://elsewhere.localhost"})
    assert "access-control-allow-origin" not in stranger.headers


@pytest.fixture(scope="module")
def closed_institute(tmp_path_factory, oidc):
    """Password login off; external platforms' tokens checked by introspection."""
    instance = _platform(
        tmp_path_factory.mktemp("closed"), ROSETTA_LOCAL_LOGIN="off", ROSETTA_OIDC_INTROSPECTION="on"
    )  # fmt: skip
    yield instance
    instance.stop()


def test_password_login_off_shows_the_provider_only_and_refuses_passwords(closed_institute, oidc):
    closed_institute.create_user("local-user", password="a local password, unused")
    login_page = httpx.get(f"{closed_institute.url}/login/")
    assert idp.LOGIN_BUTTON in login_page.text and 'name="password"' not in login_page.text
    secret = "a" * 32  # the anonymous CSRF secret, in its cookie and (unmasked) in the form
    answer = httpx.post(
        f"{closed_institute.url}/login/", cookies={"rosetta_csrf": secret},
        headers={"Origin": closed_institute.url},
        data={"csrfmiddlewaretoken": secret, "username": "local-user", "password": "a local password, unused"},
    )  # fmt: skip
    assert answer.status_code == 403
    assert "Password login is turned off on this platform" in answer.text
    browser, landed = idp.log_in_over_http(closed_institute, idp.user(oidc, "grace"))
    assert landed.status_code == 302 and browser.get("/api/me").json()["username"] == "grace"


def test_introspected_tokens(closed_institute, oidc):
    katherine = idp.user(oidc, "katherine")
    opaque = idp.access_token(oidc, idp.external_client(oidc, "opaque"), katherine, "openid read", 5173)
    assert opaque["access_token"].count(".") != 2  # not a JWT: only the provider can say what it is
    with httpx.Client(
        base_url=closed_institute.url, headers={"Authorization": f"Bearer {opaque['access_token']}"}
    ) as api:
        assert api.get("/api/me").json() == {"username": "katherine", "is_staff": False}
    meta = idp.metadata(oidc)
    client = idp.external_client(oidc, "opaque")
    httpx.post(
        meta["revocation_endpoint"], data={"token": opaque["access_token"]},
        auth=(client["client_id"], client["client_secret"]),
    ).raise_for_status()  # fmt: skip
    answer = httpx.get(f"{closed_institute.url}/api/me", headers={"Authorization": f"Bearer {opaque['access_token']}"})
    assert answer.status_code == 401
    assert "not active (expired, revoked or unknown)" in answer.json()["detail"]
    # The platform's own tokens are never sent to the provider for introspection.
    made_up = httpx.get(f"{closed_institute.url}/api/me", headers={"Authorization": "Bearer rst_" + "y" * 43})
    assert made_up.status_code == 401 and made_up.json()["detail"].startswith("This API token is invalid")


def test_first_uses_of_one_persons_token_at_once_make_one_user(closed_institute, oidc):
    ada = idp.user(oidc, "ada")  # never seen by this platform
    opaque = idp.access_token(oidc, idp.external_client(oidc, "opaque"), ada, "openid read", 5173)["access_token"]

    def me(_):
        answer = httpx.get(f"{closed_institute.url}/api/me", headers={"Authorization": f"Bearer {opaque}"}, timeout=30)
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(me, range(6)))
    assert answers == [(200, {"username": "ada", "is_staff": False})] * 6
    assert account(closed_institute, "ada") == {
        "groups": ["astronomers", "rosetta-staff"], "staff": True, "links": ["ada"], "password": False,
    }  # fmt: skip


def test_a_callback_the_platform_did_not_start_is_refused_plainly(institute):
    forged = httpx.get(f"{institute.url}/oidc/callback", params={"code": "made-up", "state": "made-up"})
    assert forged.status_code == 400
    assert "The login at the identity provider did not complete" in forged.text
    denied = httpx.get(f"{institute.url}/oidc/callback", params={"error": "access_denied", "state": "x"})
    assert denied.status_code == 400 and "access_denied" in denied.text
    assert idp.LOGIN_BUTTON in denied.text  # the way to try again, right there
