"""What every process of the platform sets up first: Django, and logging."""

import logging
import os


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
    import django

    django.setup()


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("ROSETTA_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
