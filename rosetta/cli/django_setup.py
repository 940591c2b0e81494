import os


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
    import django

    django.setup()
