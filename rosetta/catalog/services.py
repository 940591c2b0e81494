from django.db import IntegrityError, transaction

from rosetta.catalog.models import Software
from rosetta.core.errors import Conflict


def add_software(owner, **fields) -> Software:
    software = Software(owner=owner, **fields)
    software.full_clean()  # image reference and environment rules live on the model
    try:
        with transaction.atomic():
            software.save()
    except IntegrityError:
        raise Conflict(f"There is already software called {fields['name']!r}.") from None
    return software
