import pytest

from rosetta.storage.errors import PathRefused
from rosetta.storage.paths import name_of, parts


@pytest.mark.parametrize(
    ("path", "expected"),
    [("", ()), (".", ()), ("a", ("a",)), ("a/b/c.fits", ("a", "b", "c.fits")), ("a//./b/", ("a", "b")),
     ("..a/b..", ("..a", "b..")), ("é/日本", ("é", "日本"))],
)  # fmt: skip
def test_paths_inside_a_storage(path, expected):
    assert parts(path) == expected


@pytest.mark.parametrize(
    ("path", "words"),
    [("..", "leaves its folder"), ("a/../../b", "leaves its folder"), ("/etc/passwd", "absolute"),
     ("a\x00b", "NUL"), ("x" * 256, "longer than 255"), ("é" * 128, "longer than 255"),
     ("a/" * 2100, "longer than 4096")],
)  # fmt: skip
def test_paths_that_would_leave_or_break_are_refused_with_a_reason(path, words):
    with pytest.raises(PathRefused, match=words):
        parts(path)


def test_operations_on_a_name_need_one():
    assert name_of("a/b") == (("a",), "b")
    with pytest.raises(PathRefused, match="not the storage's root"):
        name_of("./")
