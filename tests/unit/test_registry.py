"""The platform's registry without a process: its configuration, addresses, the references a
resource is handed (always by digest), what the pusher decides, and the allowed-registry hook."""

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from rosetta.catalog.models import RegistryState, Software
from rosetta.catalog.pushes import RETRY_FAILED_AFTER, STILL_COPYING, Action, image_for, plan
from rosetta.catalog.registries import allowed_registries, check_registry
from rosetta.computing.errors import Refused, Unreachable
from rosetta.computing.models import Resource
from rosetta.registry import from_platform_registry, is_local, pinned, repository
from rosetta.registry.config import (
    ADDRESS_FILE,
    address,
    choose_listen_address,
    parse_address,
    public_config,
    write_config,
    writer_config,
)

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
LOCAL = Resource(name="local", transport="local")
REMOTE = Resource(name="cluster", transport="ssh", scheduler="slurm")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    settings.REGISTRY_LISTEN = "127.0.0.1:0"
    settings.REGISTRY_ADDRESS = ""
    return tmp_path


def pushed(image="localhost/rosetta/hello", digest=DIGEST, **fields) -> Software:
    defaults = dict(registry_state=RegistryState.PUSHED, registry_digest=digest, registry_image=image)
    return Software(name="hello", image=image, **{**defaults, **fields})


# --- configuration ----------------------------------------------------------------------------


def test_the_public_registry_serves_pulls_only(home):
    config = public_config("10.231.0.1:5000")
    assert config["http"]["addr"] == "10.231.0.1:5000"
    assert config["storage"]["maintenance"]["readonly"] == {"enabled": True}
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["storage"]["filesystem"]["rootdirectory"] == str(home / "registry" / "storage")
    assert "auth" not in config  # anyone who reaches it may pull
    assert config["http"]["secret"] == public_config("x:1")["http"]["secret"]  # one secret, kept


def test_the_writer_needs_its_password_and_shares_the_storage(home):
    config = writer_config("127.0.0.1:41000", home / "htpasswd")
    assert config["auth"] == {"htpasswd": {"realm": "rosetta-registry-writer", "path": str(home / "htpasswd")}}
    assert "readonly" not in config["storage"]["maintenance"]
    assert config["storage"]["filesystem"] == public_config("x:1")["storage"]["filesystem"]


def test_the_configuration_is_yaml_and_private(home):
    path = write_config(home / "registry" / "config.yml", public_config("127.0.0.1:5000"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert (home / "registry").stat().st_mode & 0o777 == 0o700
    text = path.read_text()
    assert text.startswith("#")  # a YAML comment; the rest is JSON, which YAML reads as it is
    assert json.loads(text.split("\n", 1)[1])["http"]["addr"] == "127.0.0.1:5000"


@pytest.mark.parametrize("text", ["5000", "localhost", "[::1]:5000", "::1:5000", "host:99999", "a/b:1", "host:x"])
def test_listen_addresses_an_image_reference_cannot_name_are_refused(text):
    with pytest.raises(ImproperlyConfigured, match="is not HOST:PORT"):
        parse_address(text)


def test_the_address_is_the_listen_address_unless_set(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    assert address() == "10.231.0.1:5000"
    settings.REGISTRY_LISTEN = "0.0.0.0:5000"
    assert address() is None  # which of its addresses resources reach is the operator's to say
    settings.REGISTRY_ADDRESS = "registry.example.org:5000"
    assert address() == "registry.example.org:5000"
    settings.REGISTRY_LISTEN = "off"
    assert address() is None


def test_the_address_must_name_a_port(settings):
    settings.REGISTRY_ADDRESS = "registry.example.org:0"
    with pytest.raises(ImproperlyConfigured):
        address()


def test_a_port_chosen_at_start_is_recorded_and_kept_across_restarts(home):
    assert address() is None  # not started yet
    host, port = choose_listen_address()
    assert host == "127.0.0.1" and port > 0
    assert (home / "run" / ADDRESS_FILE).read_text().strip() == f"127.0.0.1:{port}"
    assert address() == f"127.0.0.1:{port}"
    assert choose_listen_address() == (host, port)  # still free: the same one again


def test_listening_on_every_address_needs_the_address_resources_reach(settings):
    settings.REGISTRY_LISTEN = "0.0.0.0:5000"
    with pytest.raises(ImproperlyConfigured, match="ROSETTA_REGISTRY_ADDRESS"):
        choose_listen_address()


# --- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "path", "tag"),
    [
        ("localhost/rosetta/hello", "rosetta/hello", "latest"),
        ("localhost/lab/tool:1.0", "lab/tool", "1.0"),
        ("localhost/hello", "hello", "latest"),
        ("localhost/x@" + DIGEST, "x", "latest"),
    ],
)
def test_where_a_local_image_goes_in_the_registry(image, path, tag):
    assert is_local(image)
    assert repository(image) == (path, tag)


@pytest.mark.parametrize("image", ["localhost:5000/x", "ghcr.io/org/x", "10.231.0.1:5000/rosetta/hello", "debian:12"])
def test_only_localhost_names_this_machines_store(image):
    assert not is_local(image)


def test_a_pinned_reference_names_a_digest_never_a_tag():
    assert pinned("10.231.0.1:5000", "localhost/lab/tool:1.0", DIGEST) == f"10.231.0.1:5000/lab/tool@{DIGEST}"
    for bad in ("", "latest", "sha256:abc", "sha512:" + "a" * 128):
        with pytest.raises(ValueError):
            pinned("10.231.0.1:5000", "localhost/x", bad)


# --- image_for --------------------------------------------------------------------------------


def test_this_machine_runs_the_image_as_it_is(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    assert image_for(pushed(), LOCAL) == "localhost/rosetta/hello"
    assert image_for(Software(name="x", image="localhost/not/pushed"), LOCAL) == "localhost/not/pushed"


def test_other_machines_run_the_recorded_digest_from_the_platforms_registry(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    reference = image_for(pushed(), REMOTE)
    assert reference == f"10.231.0.1:5000/rosetta/hello@{DIGEST}"
    assert ":latest" not in reference and reference.count("@sha256:") == 1
    settings.REGISTRY_ADDRESS = "registry.cluster.example:5000"  # as the cluster reaches it
    assert image_for(pushed(), REMOTE) == f"registry.cluster.example:5000/rosetta/hello@{DIGEST}"


def test_a_port_chosen_at_start_is_what_other_machines_are_given():
    _, port = choose_listen_address()
    assert image_for(pushed(), REMOTE) == f"127.0.0.1:{port}/rosetta/hello@{DIGEST}"


def test_references_of_the_platforms_registry_are_recognised(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    assert from_platform_registry(image_for(pushed(), REMOTE))
    assert not from_platform_registry("ghcr.io/org/tool:1.0")
    assert not from_platform_registry("localhost/rosetta/hello")
    settings.REGISTRY_LISTEN = "off"
    assert not from_platform_registry(f"10.231.0.1:5000/rosetta/hello@{DIGEST}")


def test_images_on_other_registries_are_pulled_from_there(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    for image in ("ghcr.io/org/tool:1.0", "registry.example.org/lab/x@" + DIGEST):
        software = Software(name="x", image=image, registry_state=RegistryState.ELSEWHERE)
        assert image_for(software, REMOTE) == image


@pytest.mark.parametrize("state", [RegistryState.PENDING, RegistryState.PUSHING])
def test_an_image_not_copied_yet_is_retried(settings, state):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    with pytest.raises(Unreachable, match=STILL_COPYING) as raised:
        image_for(pushed(registry_state=state), REMOTE)
    assert raised.value.transient


def test_a_changed_image_is_not_run_from_the_old_copy(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    software = pushed(registry_image="localhost/rosetta/hello:old")  # the entry names another image now
    with pytest.raises(Unreachable, match=STILL_COPYING):
        image_for(software, REMOTE)


def test_a_failed_copy_fails_the_task_with_its_reason(settings):
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    software = pushed(
        registry_state=RegistryState.FAILED, registry_digest="", registry_reason="Image x does not exist."
    )
    with pytest.raises(Refused, match="could not be copied to the platform's registry: Image x does not exist.") as e:
        image_for(software, REMOTE)
    assert not e.value.transient


def test_without_a_registry_local_images_run_on_this_machine_only(settings):
    settings.REGISTRY_LISTEN = "off"
    with pytest.raises(Refused, match="runs no registry"):
        image_for(pushed(), REMOTE)
    assert image_for(pushed(), LOCAL) == "localhost/rosetta/hello"


def test_a_registry_not_started_yet_is_waited_for():
    with pytest.raises(Unreachable, match="has not started yet"):
        image_for(pushed(), REMOTE)  # port chosen at start, no start recorded


# --- what the pusher decides ------------------------------------------------------------------


def test_the_pushers_plan():
    now = timezone.now()
    local = "f" * 64
    assert plan(Software(image="localhost/x"), local, now) is Action.PUSH  # new (pending)
    assert plan(Software(image="localhost/x"), None, now) is Action.MISSING
    assert plan(Software(image="ghcr.io/x"), None, now) is Action.ELSEWHERE
    assert plan(Software(image="ghcr.io/x", registry_state=RegistryState.ELSEWHERE), None, now) is Action.NOTHING
    done = dict(registry_state=RegistryState.PUSHED, registry_image="localhost/x", registry_source=local)
    assert plan(Software(image="localhost/x", **done), local, now) is Action.NOTHING
    assert plan(Software(image="localhost/x", **done), None, now) is Action.NOTHING  # the copy stays valid
    assert plan(Software(image="localhost/x", **done), "e" * 64, now) is Action.PUSH  # rebuilt
    assert plan(Software(image="localhost/y", **done), local, now) is Action.PUSH  # the entry's image changed
    left = dict(registry_state=RegistryState.PUSHING, registry_image="localhost/x")  # a pusher killed half-way
    assert plan(Software(image="localhost/x", **left), local, now) is Action.PUSH
    failed = dict(registry_state=RegistryState.FAILED, registry_image="localhost/x", registry_changed=now)
    assert plan(Software(image="localhost/x", **failed), None, now) is Action.NOTHING  # still missing
    assert plan(Software(image="localhost/x", **failed), local, now) is Action.PUSH  # built since
    failed["registry_source"] = local
    assert plan(Software(image="localhost/x", **failed), local, now) is Action.NOTHING
    assert plan(Software(image="localhost/x", **failed), local, now + RETRY_FAILED_AFTER) is Action.PUSH
    assert plan(Software(image="localhost/x", **failed), None, now - timedelta(days=1)) is Action.MISSING


# --- allowed registries -----------------------------------------------------------------------


def test_the_platforms_registry_is_allowed(settings):
    settings.ALLOWED_REGISTRIES = ["localhost"]
    settings.REGISTRY_LISTEN = "10.231.0.1:5000"
    assert allowed_registries() == ["localhost", "10.231.0.1:5000"]
    check_registry(f"10.231.0.1:5000/rosetta/hello@{DIGEST}")
    with pytest.raises(ValidationError) as refused:
        check_registry("10.231.0.1:6379/x")
    assert refused.value.messages[0].endswith("Allowed registries: localhost.")  # what users name: their own


def test_no_registry_adds_nothing_to_the_allowed_list(settings):
    settings.ALLOWED_REGISTRIES = ["localhost"]
    settings.REGISTRY_LISTEN = "off"
    assert allowed_registries() == ["localhost"]
    settings.REGISTRY_LISTEN = "127.0.0.1:0"  # not started: no port known, none allowed
    assert allowed_registries() == ["localhost"]
    _, port = choose_listen_address()
    assert allowed_registries() == ["localhost", f"127.0.0.1:{port}"]
