"""What every process of the platform sets up first: Django, and logging."""

import logging
import os

from rosetta.core import logs


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
    import django

    django.setup()


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logs.formatter())
    logging.basicConfig(level=logs.level(), handlers=[handler])
