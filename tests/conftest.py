import logging

import pytest

from tests.instance import Platform

logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """One Rosetta started with `rosetta run`, shared by the end-to-end tests."""
    instance = Platform(tmp_path_factory.mktemp("rosetta"))
    instance.set_up()
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def fresh_platform(tmp_path):
    """A Rosetta of the test's own, its components started one by one."""
    instance = Platform(tmp_path / "rosetta")
    instance.set_up()
    yield instance
    instance.stop()
