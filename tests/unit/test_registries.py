import pytest
from django.core.exceptions import ValidationError

from rosetta.catalog.models import Software
from rosetta.catalog.registries import check_registry
from rosetta.registry import registry_of


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("localhost/rosetta/hello", "localhost"),
        ("localhost:5000/x", "localhost:5000"),
        ("127.0.0.1:6379/x", "127.0.0.1:6379"),
        ("Registry.Example.org/lab/tool:1.0", "registry.example.org"),
        ("ghcr.io/org/x@sha256:" + "a" * 64, "ghcr.io"),
        ("debian:12", None),
        ("library/debian", None),
        ("hello", None),
    ],
)
def test_registry_of(image, registry):
    assert registry_of(image) == registry


def test_only_allowed_registries_pass(settings):
    settings.ALLOWED_REGISTRIES = ["localhost", "registry.example.org:5000"]
    check_registry("localhost/x")
    check_registry("registry.example.org:5000/lab/x:1")
    for image in ("registry.example.org/lab/x", "localhost:5000/x", "127.0.0.1/x", "x"):
        with pytest.raises(ValidationError, match="Allowed registries: localhost, registry.example.org:5000."):
            check_registry(image)


def test_no_registry_allowed_says_so(settings):
    settings.ALLOWED_REGISTRIES = []
    with pytest.raises(ValidationError, match="Allowed registries: none"):
        check_registry("localhost/x")


def test_the_catalogue_model_checks_the_registry(settings):
    settings.ALLOWED_REGISTRIES = ["localhost"]
    with pytest.raises(ValidationError) as refused:
        Software(name="probe", image="127.0.0.1:22/x").clean()
    assert refused.value.message_dict == {
        "image": ["Images from 127.0.0.1:22 are not allowed here. Allowed registries: localhost."]
    }
    Software(name="fine", image="localhost/x").clean()
    Software(name="malformed", image="--privileged").clean()  # left to the field's own validator
