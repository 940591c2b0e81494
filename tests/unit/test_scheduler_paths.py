"""Where a task's storages may not be: the platform's own folder on the resource."""

import pytest

from rosetta.computing.schedulers.base import paths_meet


@pytest.mark.parametrize(
    ("source", "work_dir", "meet"),
    [
        ("/home/rosetta/.rosetta", "/home/rosetta/.rosetta", True),  # the folder itself
        ("/home/rosetta/.rosetta/t123", "/home/rosetta/.rosetta", True),  # a task's directory
        ("/home/rosetta", "/home/rosetta/.rosetta", True),  # the account's home holds it
        ("/home/rosetta/users/ada", "/home/rosetta/.rosetta", False),
        ("/home/rosetta/.rosetta-old", "/home/rosetta/.rosetta", False),  # a neighbour by name only
        ("/home/rosetta/./users/../.rosetta/", "/home/rosetta/.rosetta", True),
        ("/", "/srv/rosetta/work", True),
    ],
)
def test_a_storage_folder_meets_the_platforms_folder_when_one_holds_the_other(source, work_dir, meet):
    assert paths_meet(source, work_dir) is meet
