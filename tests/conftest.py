import logging

import pytest

from tests.instance import Platform

logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """Tests that run the controller in this process use the database from several threads:
    a file, as in production, not SQLite's shared in-memory database."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["TEST"]["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


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
