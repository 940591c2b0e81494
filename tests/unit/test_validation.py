import pytest
from django.core.exceptions import ValidationError

from rosetta.core.units import parse_memory_mb
from rosetta.core.validation import validate_env_vars, validate_image_reference, validate_task_name


@pytest.mark.parametrize(
    "image",
    [
        "localhost/rosetta/hello",
        "debian:12",
        "registry.example.org:5000/lab/tool:v1.2",
        "ghcr.io/org/x@sha256:" + "a" * 64,
    ],
)
def test_good_image_references(image):
    validate_image_reference(image)


@pytest.mark.parametrize("image", ["--privileged", "-v/:/host", "Upper/Case", "a b", "x;rm -rf /", "", "x" * 300])
def test_bad_image_references(image):
    with pytest.raises(ValidationError):
        validate_image_reference(image)


@pytest.mark.parametrize(
    "env",
    [
        {"A-B": "x"},
        {"1A": "x"},
        {"A;B": "x"},
        {"$(id)": "x"},
        {"A*": "x"},
        {"": "x"},
        {"BASE_PORT": "1"},
        {"ROSETTA_TOKEN": "x"},
        {"A": "line\nbreak"},
        {"A": "nul\x00"},
        {"A": 1},
        ["A=1"],
        {"A": "x" * 5000},
    ],
)
def test_bad_environments(env):
    with pytest.raises(ValidationError):
        validate_env_vars(env)


def test_values_with_shell_metacharacters_are_accepted_as_literals():
    validate_env_vars({"QUERY": "$(id); `ls` | & > < * ? ' \"", "TABBED": "a\tb"})


@pytest.mark.parametrize("name", ["analysis", "run-2", "a.b_c"])
def test_good_task_names(name):
    validate_task_name(name)


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 64, "é", "a/b"])
def test_bad_task_names(name):
    with pytest.raises(ValidationError):
        validate_task_name(name)


@pytest.mark.parametrize(
    ("text", "mib"), [("512", 512), ("512M", 512), ("1G", 1024), ("1.5g", 1536), ("2GiB", 2048), ("2048k", 2)]
)
def test_memory_sizes(text, mib):
    assert parse_memory_mb(text) == mib


@pytest.mark.parametrize("text", ["", "lots", "1X", "-5M"])
def test_bad_memory_sizes(text):
    with pytest.raises(ValueError):
        parse_memory_mb(text)
