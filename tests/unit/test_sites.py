import pytest

from rosetta.core.sites import same_site, same_site_problem


@pytest.mark.parametrize(
    ("public_host", "tasks_domain"),
    [
        ("rosetta.example.org", "rosetta.example.org"),  # the default: tasks under the platform's own host
        ("rosetta.example.org", "example.org"),
        ("rosetta.example.org", "tasks.example.org"),
        ("Rosetta.Example.ORG.", "tasks.example.org"),
        ("rosetta.example.co.uk", "example.co.uk"),
        ("example.org", "tasks.example.org"),
        ("rosetta.corp", "tasks.corp"),  # a top-level domain the list does not know counts as one site
        ("myhost", "myhost"),
    ],
)
def test_same_site(public_host, tasks_domain):
    assert same_site(public_host, tasks_domain)
    problem = same_site_problem(public_host, tasks_domain)
    assert f"*.{tasks_domain}" in problem and public_host in problem


@pytest.mark.parametrize(
    ("public_host", "tasks_domain"),
    [
        ("rosetta.example.org", "example-tasks.org"),
        ("rosetta.example.org", "tasks.example.net"),
        ("rosetta.example.co.uk", "other.co.uk"),  # co.uk is a public suffix
        ("rosetta.github.io", "tasks.github.io"),  # so is github.io (the list's private section)
        ("rosetta.example.org", "github.io"),  # then each task is a site of its own
        ("127.0.0.1", "localhost"),
        ("::1", "localhost"),
    ],
)
def test_cross_site(public_host, tasks_domain):
    assert not same_site(public_host, tasks_domain)
    assert same_site_problem(public_host, tasks_domain) is None


@pytest.mark.parametrize(
    ("public_host", "tasks_domain"), [("localhost", "localhost"), ("rosetta.localhost", "localhost")]
)
def test_this_machine_alone_is_accepted(public_host, tasks_domain):
    assert same_site(public_host, tasks_domain)  # browsers may well treat them as one site,
    assert same_site_problem(public_host, tasks_domain) is None  # but no one else's browser reaches them
