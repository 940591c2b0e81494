"""Where tasks may see a storage: mount points checked the same way for operators' storages and
for a task's own choice (NAME:MOUNT), and what a task keeps said in plain words."""

import pytest
from django.core.exceptions import ValidationError

from rosetta.storage.models import TaskMount, validate_mount_point
from rosetta.storage.services import parse_choice, what_is_kept


@pytest.mark.parametrize("path", ["/home/rosetta", "/data", "/home/rosetta/cluster", "/srv/a b/c-1.2"])
def test_plain_absolute_paths_are_mount_points(path):
    validate_mount_point(path)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("data", "absolute"),
        ("", "absolute"),
        ("/", "plain path"),
        ("/data/", "plain path"),
        ("/a/../etc", "plain path"),
        ("/a/./b", "plain path"),
        ("//data", "plain path"),
        ("/a,b", "comma"),
        ("/a:b", "colon"),
        ("/a\nb", "control"),
        ("/a\x00b", "control"),
        ("/proc", "container's own"),
        ("/dev/shm", "container's own"),
        ("/" + "x" * 255, "longer than 255"),
    ],
)
def test_mount_points_that_are_refused_say_why(path, words):
    with pytest.raises(ValidationError) as refused:
        validate_mount_point(path)
    assert words in " ".join(refused.value.messages)


def test_a_choice_is_a_storage_and_maybe_where():
    assert parse_choice("home") == ("home", None)
    assert parse_choice("home:/data/mine") == ("home", "/data/mine")
    with pytest.raises(ValidationError, match="Storage home: .*plain path"):
        parse_choice("home:/data/../etc")


def test_what_a_task_keeps_is_said_plainly():
    home = TaskMount(source="/s/ada", target="/home/rosetta")
    data = TaskMount(source="/d", target="/data", read_only=True)
    scratch = what_is_kept([])
    assert scratch.startswith("Your home /home/rosetta is scratch space: lost when the task ends")
    assert "Nothing is kept" in scratch
    assert "Kept: a storage since removed at /data (read-only)." in what_is_kept([data])
    kept = what_is_kept([home, data])
    assert kept.startswith("Kept: your home /home/rosetta") and "Not kept: everything else in the container" in kept
