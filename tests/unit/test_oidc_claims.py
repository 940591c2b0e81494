"""What the identity provider's claims mean here: the user's name, groups and staff rights, and
what an external platform's access token may do."""

import pytest

from rosetta.accounts.identity import Refused, groups_from_claim, person_from_claims, scopes_from_claim

ISSUER = "https://login.example.org/realms/astro"


def person(claims, staff_group="rosetta-staff", username_claim="preferred_username", groups_claim="groups"):
    return person_from_claims(claims, ISSUER, username_claim, groups_claim, staff_group)


def test_claims_name_the_user_their_groups_and_staff_rights():
    ada = person({"sub": "f81d4fae", "preferred_username": "ada", "email": "ada@example.org",
                  "groups": ["astronomers", "rosetta-staff", "astronomers"]})  # fmt: skip
    assert (ada.issuer, ada.subject, ada.username, ada.email) == (ISSUER, "f81d4fae", "ada", "ada@example.org")
    assert ada.groups == ("astronomers", "rosetta-staff") and ada.staff is True
    assert person({"sub": "1", "preferred_username": "grace", "groups": ["astronomers"]}).staff is False
    # No staff group configured: staff is the platform's own business, left as it is.
    assert person({"sub": "1", "preferred_username": "grace"}, staff_group="").staff is None


def test_the_claims_to_read_are_configurable():
    claims = {"sub": "1", "email": "hedy@example.org", "roles": "radio,optics"}
    hedy = person(claims, username_claim="email", groups_claim="roles")
    assert hedy.username == "hedy@example.org" and hedy.groups == ("optics", "radio")


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        (None, ()),
        ([], ()),
        (["b", "a", " a "], ("a", "b")),
        ("a b,c", ("a", "b", "c")),
        (["/astro/staff"], ("/astro/staff",)),  # Keycloak's group paths, whole
        ({"not": "a list"}, ()),
        (42, ()),
    ],
)
def test_groups_claim_shapes(value, groups):
    assert groups_from_claim(value) == groups


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        ({"preferred_username": "ada"}, "no subject"),
        ({"sub": "1"}, "'preferred_username' claim is missing"),
        ({"sub": "1", "preferred_username": "  "}, "'preferred_username' claim is missing"),
        ({"sub": "1", "preferred_username": "ada lovelace"}, "cannot be used here"),
        ({"sub": "1", "preferred_username": "a" * 151}, "longer than 150"),
    ],
)
def test_claims_that_do_not_name_a_user_usably_are_refused(claims, said):
    with pytest.raises(Refused, match=said):
        person(claims)


@pytest.mark.parametrize(
    ("scope", "staff", "held"),
    [
        ("openid profile", False, {"read"}),  # none of the platform's scopes: read only
        ("", False, {"read"}),
        (None, False, {"read"}),
        ("openid read tasks", False, {"read", "tasks"}),
        ("read files software", False, {"read", "files", "software"}),
        ("read admin", False, {"read"}),  # admin only for staff...
        ("read admin", True, {"read", "admin"}),  # ... who asked for it
        ("read", True, {"read"}),
        (["read", "tasks"], False, {"read", "tasks"}),  # some providers write a list
        ("openid tasks", False, {"tasks"}),
    ],
)
def test_scopes_of_a_providers_token(scope, staff, held):
    assert scopes_from_claim(scope, staff) == frozenset(held)
