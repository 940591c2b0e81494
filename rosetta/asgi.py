import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
django.setup(set_prefix=False)

from rosetta.storage.streaming import Handler  # noqa: E402 -- needs the settings above

# Django's handler, except that uploads to storages reach their view as they arrive.
application = Handler()
