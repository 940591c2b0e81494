"""The gateway's access policy, table-tested: request facts and a route table in, a decision out."""

import pytest

from rosetta.gateway.access import OneTimeToken
from rosetta.gateway.policy import (
    DEFER,
    FORWARD_TO_PLATFORM,
    Forward,
    Grant,
    Login,
    Redirect,
    Refuse,
    RequestHead,
    Site,
    Unavailable,
    complete_login,
    decide,
)
from rosetta.gateway.routes import Route, RouteTable

OWNER, STRANGER, STAFF, GONE = 1, 2, 3, 4  # GONE: deactivated, so not in the table's epochs
SITE = Site("http://localhost:8000", "localhost", max_platform_body=1024)
LAB = Route("t1", "Lab <1>", OWNER, "running", ("127.0.0.1", 41000))
STARTING = Route("t2", "Soon", OWNER, "starting", None)
FAILED = Route("t3", "Gone", OWNER, "failed", None)
TABLE = RouteTable(
    routes={route.task_id: route for route in (LAB, STARTING, FAILED)},
    staff_ids=frozenset({STAFF}),
    epochs={OWNER: 2, STRANGER: 0, STAFF: 5},
)
TASK_ORIGIN = b"http://t1.localhost:8000"
PLATFORM_ORIGIN = b"http://localhost:8000"


def head(**facts) -> RequestHead:
    """A GET to t1 at time 10 answered from a table read at 20, unless ``facts`` say otherwise."""
    defaults = {
        "method": b"GET",
        "target": b"/",
        "task_id": "t1",
        "origin": None,
        "cookie_users": (),
        "bearer_user": None,
        "upgrade": False,
        "content_length": None,
        "accepts_html": False,
        "arrived": 10.0,
        "table_read_at": 20.0,
        "access_may_have_changed": False,
    }
    return RequestHead(**{**defaults, **facts})


OPEN = Forward(LAB)
UNAUTHORIZED = "401"
FORBIDDEN = "403"
REDIRECT = "redirect"


def kind(decision):
    """The decision, with refusals and redirects reduced to what the table below compares."""
    if isinstance(decision, Refuse):
        return str(decision.status)
    if isinstance(decision, Redirect):
        return REDIRECT
    return decision


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # Credentials.
        ({"cookie_users": ((OWNER, 2),)}, OPEN),
        ({"cookie_users": ((OWNER, 1),)}, UNAUTHORIZED),  # an epoch ago: the owner logged out since
        ({"cookie_users": ((OWNER, 1),), "accepts_html": True}, REDIRECT),  # ... a browser goes back to Rosetta
        ({"cookie_users": ((GONE, 0),)}, UNAUTHORIZED),  # deactivated
        ({"cookie_users": ((STRANGER, 0),)}, FORBIDDEN),
        ({"cookie_users": ((STAFF, 5),)}, OPEN),
        ({"cookie_users": ((STRANGER, 0), (OWNER, 2))}, OPEN),  # one tossed by a sibling origin, one good
        ({"bearer_user": OWNER}, OPEN),
        ({"bearer_user": STRANGER}, FORBIDDEN),
        ({"bearer_user": STRANGER, "cookie_users": ((OWNER, 2),)}, OPEN),
        # A staff member's token acts as staff only when made with the admin scope.
        ({"bearer_user": STAFF}, FORBIDDEN),
        ({"bearer_user": STAFF, "bearer_staff": True}, OPEN),
        ({}, UNAUTHORIZED),
        ({"accepts_html": True}, REDIRECT),
        ({"accepts_html": True, "method": b"POST"}, UNAUTHORIZED),  # only a navigation is redirected
        # Origin matters only for upgrades (and the login form, below).
        ({"cookie_users": ((OWNER, 2),), "origin": b"http://evil.example"}, OPEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": TASK_ORIGIN}, OPEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": b"HTTP://T1.localhost:8000"}, OPEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": b"http://evil.example"}, FORBIDDEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": b"http://t2.localhost:8000"}, FORBIDDEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": PLATFORM_ORIGIN}, FORBIDDEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": b"http://t1.localhost"}, FORBIDDEN),  # port
        ({"cookie_users": ((OWNER, 2),), "upgrade": True, "origin": b"null"}, FORBIDDEN),
        ({"cookie_users": ((OWNER, 2),), "upgrade": True}, FORBIDDEN),  # no Origin: not a browser, cookies do not do
        ({"bearer_user": OWNER, "upgrade": True}, OPEN),  # ... a script with its API token does
        ({"bearer_user": OWNER, "upgrade": True, "origin": b"http://evil.example"}, FORBIDDEN),
        ({"upgrade": True, "origin": TASK_ORIGIN}, UNAUTHORIZED),
        # Tasks the table does not know, or knows not to be ready.
        ({"task_id": "nope", "bearer_user": OWNER}, "404"),
        ({"task_id": "nope", "table_read_at": 5.0}, DEFER),  # the database may know it already
        ({"task_id": "nope", "table_read_at": 5.0, "may_wait": False}, "404"),
        ({"task_id": "t2", "bearer_user": OWNER}, Unavailable(STARTING)),
        ({"task_id": "t2", "bearer_user": OWNER, "table_read_at": 5.0}, DEFER),  # it may be running by now
        ({"task_id": "t3", "bearer_user": OWNER, "table_read_at": 5.0}, Unavailable(FAILED)),  # final: no waiting
        ({"task_id": "t2", "bearer_user": STRANGER}, FORBIDDEN),
        (
            {"cookie_users": ((OWNER, 2),), "access_may_have_changed": True},
            DEFER,
        ),  # a log out the table may not know yet
        ({"cookie_users": ((OWNER, 2),), "access_may_have_changed": True, "may_wait": False}, OPEN),
        # The login form.
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": PLATFORM_ORIGIN}, Login(LAB)),
        ({"method": b"POST", "target": b"/.rosetta/login?x=1", "origin": PLATFORM_ORIGIN}, Login(LAB)),
        ({"method": b"POST", "target": b"/.rosetta/login"}, FORBIDDEN),  # login CSRF
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": b"null"}, FORBIDDEN),
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": TASK_ORIGIN}, FORBIDDEN),
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": b"http://evil.example"}, FORBIDDEN),
        ({"method": b"GET", "target": b"/.rosetta/login", "bearer_user": OWNER}, "405"),
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": PLATFORM_ORIGIN, "upgrade": True}, "405"),
        ({"method": b"POST", "target": b"/.rosetta/login", "origin": PLATFORM_ORIGIN, "task_id": "nope"}, "404"),
        ({"method": b"POST", "target": b"/.rosetta/loginx", "origin": PLATFORM_ORIGIN}, UNAUTHORIZED),
        # The platform's own routes.
        ({"task_id": None}, FORWARD_TO_PLATFORM),
        ({"task_id": None, "method": b"POST", "content_length": 1024}, FORWARD_TO_PLATFORM),
        ({"task_id": None, "method": b"POST", "content_length": 1025}, "413"),
        ({"task_id": None, "upgrade": True, "origin": b"http://evil.example"}, FORWARD_TO_PLATFORM),
        ({"task_id": None, "table_read_at": 5.0, "access_may_have_changed": True}, FORWARD_TO_PLATFORM),
    ],
)
def test_decide(facts, expected):
    assert kind(decide(head(**facts), TABLE, SITE)) == expected


def test_refusals_say_what_to_do():
    refused = decide(head(cookie_users=((STRANGER, 0),)), TABLE, SITE)
    assert refused.message == "You may not open the task “Lab <1>”."
    unauthorized = decide(head(), TABLE, SITE)
    assert unauthorized.headers == (("WWW-Authenticate", "Bearer"),)
    login_get = decide(head(target=b"/.rosetta/login"), TABLE, SITE)
    assert login_get.headers == (("Allow", "POST"),)


def test_a_browser_without_access_is_sent_to_open_the_task_from_rosetta():
    redirect = decide(head(target=b"/lab/tree?path=a b&x=/", accepts_html=True), TABLE, SITE)
    assert redirect == Redirect("http://localhost:8000/tasks/t1/open?next=%2Flab%2Ftree%3Fpath%3Da%20b%26x%3D%2F")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "403"),  # bad signature, expired or used already
        (OneTimeToken(OWNER, 1, 0, "n"), "403"),  # minted before the owner logged out
        (OneTimeToken(GONE, 0, 0, "n"), "403"),
        (OneTimeToken(STRANGER, 0, 0, "n"), "403"),
        (OneTimeToken(OWNER, 2, 0, "n"), Grant(OWNER, 2, "/lab?x=1")),
        (OneTimeToken(STAFF, 5, 0, "n"), Grant(STAFF, 5, "/lab?x=1")),
    ],
)
def test_complete_login(token, expected):
    assert kind(complete_login(token, "t1", LAB, TABLE, "/lab?x=1", SITE)) == expected


def test_expired_link_points_back_to_the_task_and_next_stays_on_the_origin():
    expired = complete_login(None, "t1", LAB, TABLE, "/", SITE)
    assert expired.title == "Link expired" and expired.link == ("http://localhost:8000/tasks/t1", "Back to the task")
    granted = complete_login(OneTimeToken(OWNER, 2, 0, "n"), "t1", LAB, TABLE, "//evil.example/", SITE)
    assert granted.location == "/"


@pytest.mark.parametrize(
    ("public_url", "tasks_domain", "public_origin", "task_origin"),
    [
        ("http://localhost:8000", "localhost", b"http://localhost:8000", b"http://t1.localhost:8000"),
        (
            "https://rosetta.example.org",
            "example-tasks.org",
            b"https://rosetta.example.org",
            b"https://t1.example-tasks.org",
        ),
        (
            "https://Rosetta.Example.org:443/",
            "Tasks.Example",
            b"https://rosetta.example.org",
            b"https://t1.tasks.example",
        ),
        ("http://127.0.0.1:8080", "localhost", b"http://127.0.0.1:8080", b"http://t1.localhost:8080"),
        ("http://[::1]:8000", "localhost", b"http://[::1]:8000", b"http://t1.localhost:8000"),
    ],
)
def test_origins_are_the_ones_browsers_send(public_url, tasks_domain, public_origin, task_origin):
    site = Site(public_url, tasks_domain)
    assert site.public_origin == public_origin
    assert site.task_origin("t1") == task_origin


# Which credential reaches the upstream: the task's secret (software the platform signs in), the
# client's own Authorization (software with its own login; the platform), or nothing of the platform's.
SECRET = b"Authorization: Bearer task-secret\r\n"
SIGNED_IN = Route("t4", "Signed in", OWNER, "running", ("127.0.0.1", 41001), authorization=SECRET)
OWN_LOGIN = Route("t5", "Own login", OWNER, "running", ("127.0.0.1", 41002))
CREDENTIAL_TABLE = RouteTable(
    routes={route.task_id: route for route in (SIGNED_IN, OWN_LOGIN)},
    staff_ids=frozenset({STAFF}),
    epochs={OWNER: 2, STRANGER: 0, STAFF: 5},
    token_users={},
)
BASIC = b"Authorization: Basic dTpw\r\n"
API_TOKEN = b"Authorization: Bearer rst_secret\r\n"
OWN_TOKEN = b"Authorization: Bearer the-softwares-own\r\n"
COOKIE = {"cookie_users": ((OWNER, 2),)}


@pytest.mark.parametrize(
    ("facts", "credential"),
    [
        # The task's secret, whatever the client sent.
        ({"task_id": "t4", **COOKIE}, SECRET),
        ({"task_id": "t4", **COOKIE, "authorization": BASIC}, SECRET),
        ({"task_id": "t4", "bearer_user": OWNER, "api_token_line": API_TOKEN}, SECRET),
        ({"task_id": "t4", **COOKIE, "api_token_line": API_TOKEN}, SECRET),
        # Its own login: the client's own Authorization goes through...
        ({"task_id": "t5", **COOKIE}, b""),
        ({"task_id": "t5", **COOKIE, "authorization": BASIC}, BASIC),
        # ... but never a platform API token that proved who sent it: the task could act as them.
        ({"task_id": "t5", "bearer_user": OWNER, "api_token_line": API_TOKEN}, b""),
        ({"task_id": "t5", "bearer_user": OWNER, "api_token_line": API_TOKEN, "authorization": BASIC}, BASIC),
        # A platform token the table does not know (revoked, or not made to use tasks) stays out too:
        # it is still the visitor's secret on the platform. A bearer token of another form is the task's.
        ({"task_id": "t5", **COOKIE, "api_token_line": API_TOKEN}, b""),
        ({"task_id": "t5", **COOKIE, "api_token_line": OWN_TOKEN}, OWN_TOKEN),
        # The platform checks whatever the client sent itself.
        ({"task_id": None, "authorization": BASIC, "api_token_line": API_TOKEN}, BASIC + API_TOKEN),
        ({"task_id": None}, b""),
    ],
)
def test_the_credential_that_reaches_the_upstream(facts, credential):
    decision = decide(head(**facts), CREDENTIAL_TABLE, SITE)
    assert type(decision) is Forward and decision.credential == credential


@pytest.mark.parametrize(
    "facts",
    [
        {"task_id": "t5", "authorization": BASIC},  # no cookie: its own credentials do not open the origin
        {"task_id": "t5", "cookie_users": ((STRANGER, 0),), "authorization": BASIC},
        {"task_id": "t4", "api_token_line": API_TOKEN},  # a token naming nobody
    ],
)
def test_credentials_reach_no_task_the_client_may_not_open(facts):
    assert type(decide(head(**facts), CREDENTIAL_TABLE, SITE)) is Refuse
