"""Which scope each API request needs (rosetta.api.scopes): every change of every operation the
API offers belongs to a named part, so none falls to the admin-only default by accident."""

import pytest

from rosetta.accounts.tokens import ADMIN, FILES, READ, SOFTWARE, TASKS, scopes_text
from rosetta.api.scopes import CHANGES, ScopeRefused, check, required_scope


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "tasks", READ),
        ("HEAD", "storages/home/content", READ),
        ("POST", "tasks", TASKS),
        ("POST", "tasks/abc/stop", TASKS),
        ("DELETE", "tasks/abc", TASKS),
        ("POST", "tokens", TASKS),
        ("POST", "me/keys", TASKS),
        ("PUT", "storages/home/content", FILES),
        ("POST", "software/builds", SOFTWARE),
        ("PATCH", "resources/local", ADMIN),
        ("POST", "something-new", ADMIN),  # unlisted: closed to limited tokens
        ("post", "/tasks/", TASKS),
    ],
)
def test_each_request_needs_the_scope_of_what_it_changes(method, path, needed):
    assert required_scope(method, path) == needed


def test_every_change_the_api_offers_belongs_to_a_named_part():
    from rosetta.api.views import api

    paths = api.get_openapi_schema(path_prefix="/api/")["paths"]
    unsafe = [
        (method, path) for path, ops in paths.items() for method in ops if method in {"post", "put", "patch", "delete"}
    ]
    assert len(unsafe) > 20
    unnamed = [f"{method} {path}" for method, path in unsafe if path.removeprefix("/api/").split("/")[0] not in CHANGES]
    assert unnamed == []


def test_a_refusal_names_the_scope_missing_and_those_held():
    with pytest.raises(ScopeRefused, match=r"needs the 'files' scope \(it has: read, tasks\)"):
        check(frozenset({READ, TASKS}), "DELETE", "storages/home/entries")
    check(frozenset({READ}), "GET", "storages/home/entries")


def test_scopes_are_stored_in_one_order_and_unknown_ones_refused():
    assert scopes_text(["tasks", "read", "tasks"]) == "read tasks"
    with pytest.raises(ValueError, match="Unknown scope 'root'"):
        scopes_text(["read", "root"])


def test_a_providers_token_never_makes_a_lasting_credential_of_the_platform():
    everything = frozenset({READ, TASKS, FILES, SOFTWARE})
    for path in ("tokens", "me/keys", "me/ssh-key", "/tokens/x"):
        with pytest.raises(ScopeRefused, match="log in to Rosetta"):
            check(everything, "POST", path, from_provider=True)
    check(everything, "POST", "tokens")  # a platform token may, within its scopes
    check(everything, "GET", "tokens", from_provider=True)
    check(everything, "POST", "tasks", from_provider=True)
